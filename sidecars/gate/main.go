// Command gate is hastack's start gate: it runs the app only while its member is active.
//
//	gate [--state-dir /run/hastack] [--name NAME] [--poll 100ms] [--grace 10s] -- COMMAND [ARGS...]
//
// It reads state.json (written atomically by the heartbeat sidecar; the contract is
// sidecars/common/state_file.py) and starts COMMAND only when "serve" and "mounted" are true and
// CLOCK_MONOTONIC is below "fenceDeadline". When any of that stops holding -- demotion, or the
// heartbeat no longer pushing the deadline forward (sbd-like self-fencing) -- it stops the app's
// process group: SIGTERM, "stopGraceSeconds", SIGKILL. Every state generation it sees is
// acknowledged in gate.ack (gate.NAME.ack with --name), with "running" telling whether the app
// runs, so heartbeat unmounts only after the app is gone.
//
// Signals (TERM, INT, HUP, QUIT, USR1, USR2) are forwarded to the app; after TERM, INT or QUIT the
// gate exits with the app's exit status. If the app exits on its own, the gate exits with its
// status (the kubelet restarts the container). As PID 1 it also reaps orphaned processes.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
	"unsafe"
)

type gateState struct {
	Version          int      `json:"version"`
	Member           string   `json:"member"`
	Role             string   `json:"role"`
	Serve            bool     `json:"serve"`
	Mounted          bool     `json:"mounted"`
	FenceDeadline    *float64 `json:"fenceDeadline"`
	StopGraceSeconds float64  `json:"stopGraceSeconds"`
	Generation       int64    `json:"generation"`
}

type gateAck struct {
	Version    int     `json:"version"`
	Name       string  `json:"name"`
	Generation int64   `json:"generation"`
	Running    bool    `json:"running"`
	Pid        int     `json:"pid"`
	ExitCode   *int    `json:"exitCode"`
	Reason     string  `json:"reason"`
	At         float64 `json:"at"`
}

// monotonic returns CLOCK_MONOTONIC in seconds: the clock heartbeat's deadline is written in.
func monotonic() float64 {
	var ts syscall.Timespec
	_, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, 1, uintptr(unsafe.Pointer(&ts)), 0)
	if errno != 0 {
		fatal("clock_gettime(CLOCK_MONOTONIC): %v", errno)
	}
	return float64(ts.Sec) + float64(ts.Nsec)/1e9
}

func fatal(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "gate: "+format+"\n", args...)
	os.Exit(127)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "gate: "+format+"\n", args...)
}

type gate struct {
	stateDir, name string
	grace          time.Duration
	argv           []string
	pid            int // 0: the app is not running
	stopping       bool
	killAt         float64
	terminating    bool // the gate itself was told to stop
	lastAcked      int64
	lastGen        int64
	lastState      *gateState
}

func (g *gate) readState() *gateState {
	data, err := os.ReadFile(filepath.Join(g.stateDir, "state.json"))
	if err != nil {
		return nil
	}
	var st gateState
	if json.Unmarshal(data, &st) != nil || st.Version != 1 {
		return nil
	}
	return &st
}

func mayRun(st *gateState, now float64) bool {
	return st != nil && st.Serve && st.Mounted && st.FenceDeadline != nil && now < *st.FenceDeadline
}

func (g *gate) writeAck(running bool, exitCode *int, reason string) {
	ack := gateAck{Version: 1, Name: g.name, Generation: g.lastGen, Running: running, Pid: g.pid,
		ExitCode: exitCode, Reason: reason, At: monotonic()}
	data, _ := json.Marshal(ack)
	file := "gate.ack"
	if g.name != "" {
		file = "gate." + g.name + ".ack"
	}
	tmp, err := os.CreateTemp(g.stateDir, "."+file+".")
	if err != nil {
		logf("cannot write %s: %v", file, err)
		return
	}
	_, werr := tmp.Write(append(data, '\n'))
	serr := tmp.Sync()
	cerr := tmp.Close()
	if werr != nil || serr != nil || cerr != nil {
		os.Remove(tmp.Name())
		logf("cannot write %s", file)
		return
	}
	if err := os.Rename(tmp.Name(), filepath.Join(g.stateDir, file)); err != nil {
		os.Remove(tmp.Name())
		logf("cannot replace %s: %v", file, err)
		return
	}
	g.lastAcked = g.lastGen
}

func (g *gate) start() {
	path := g.argv[0]
	if filepath.Base(path) == path {
		if found, err := lookPath(path); err == nil {
			path = found
		}
	}
	attr := &os.ProcAttr{Files: []*os.File{os.Stdin, os.Stdout, os.Stderr},
		Sys: &syscall.SysProcAttr{Setpgid: true}}
	proc, err := os.StartProcess(path, g.argv, attr)
	if err != nil {
		fatal("cannot start %q: %v", g.argv[0], err)
	}
	g.pid = proc.Pid
	logf("started %s (pid %d): member %s is active", g.argv[0], g.pid, g.lastState.Member)
	g.writeAck(true, nil, "started")
}

func lookPath(file string) (string, error) {
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		p := filepath.Join(dir, file)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", os.ErrNotExist
}

func (g *gate) beginStop(reason string, graceSeconds float64) {
	if g.pid == 0 || g.stopping {
		return
	}
	g.stopping = true
	grace := g.grace.Seconds()
	if graceSeconds > 0 {
		grace = graceSeconds
	}
	g.killAt = monotonic() + grace
	logf("stopping the app (pid %d): %s; SIGKILL in %.1fs", g.pid, reason, grace)
	syscall.Kill(-g.pid, syscall.SIGTERM)
}

// killGroup kills whatever is left of the app's process group once its leader has exited, and
// waits (bounded) until the group is empty: nothing of the app may outlive an acknowledged stop.
func (g *gate) killGroup() {
	deadline := monotonic() + 5
	for monotonic() < deadline {
		if err := syscall.Kill(-g.pid, 0); err == syscall.ESRCH {
			return
		}
		syscall.Kill(-g.pid, syscall.SIGKILL)
		g.reap() // as child subreaper the gate inherits the app's orphans and reaps them here
		time.Sleep(10 * time.Millisecond)
	}
	logf("processes of the app's group %d survived SIGKILL for 5s", g.pid)
}

// reap collects every exited child; returns the app's exit status if it was among them.
func (g *gate) reap() (exited bool, code int) {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
		if pid == g.pid {
			exited = true
			code = ws.ExitStatus()
			if ws.Signaled() {
				code = 128 + int(ws.Signal())
			}
		}
	}
}

func (g *gate) step(now float64) {
	st := g.readState()
	if st != nil {
		g.lastState = st
		if st.Generation > g.lastGen {
			g.lastGen = st.Generation
		}
	}
	run := mayRun(st, now)
	switch {
	case g.pid == 0 && run && !g.terminating:
		g.start()
	case g.pid != 0 && !run && !g.stopping:
		reason := "state file unreadable"
		grace := 0.0
		if st != nil {
			grace = st.StopGraceSeconds
			switch {
			case !st.Serve:
				reason = fmt.Sprintf("member %s is %s, not serving", st.Member, st.Role)
			case !st.Mounted:
				reason = "filesystem not mounted"
			default:
				reason = "fence deadline passed: heartbeat stopped renewing the right to stay active"
			}
		}
		g.beginStop(reason, grace)
	}
	if g.stopping && now >= g.killAt && g.pid != 0 {
		logf("app (pid %d) still running after grace: SIGKILL", g.pid)
		syscall.Kill(-g.pid, syscall.SIGKILL)
		g.killAt = now + 1
	}
	if g.lastGen > g.lastAcked && !g.stopping {
		g.writeAck(g.pid != 0, nil, "state generation seen")
	}
}

func main() {
	g := &gate{}
	fs := flag.NewFlagSet("gate", flag.ContinueOnError)
	stateDir := os.Getenv("HASTACK_RUN_DIR")
	if stateDir == "" {
		stateDir = "/run/hastack"
	}
	fs.StringVar(&g.stateDir, "state-dir", stateDir, "directory of state.json and the ack file")
	fs.StringVar(&g.name, "name", "", "gate name: acknowledge in gate.NAME.ack (one per gated container)")
	poll := fs.Duration("poll", 100*time.Millisecond, "how often state.json is read")
	fs.DurationVar(&g.grace, "grace", 10*time.Second, "TERM to KILL grace when state.json gives none")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	g.argv = fs.Args()
	if len(g.argv) == 0 {
		fmt.Fprintln(os.Stderr, "usage: gate [flags] -- COMMAND [ARGS...]")
		os.Exit(2)
	}
	// PR_SET_CHILD_SUBREAPER: the app's orphans become the gate's children, so they can be reaped.
	syscall.RawSyscall(syscall.SYS_PRCTL, 36, 1, 0)
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT,
		syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGCHLD)
	timer := time.NewTimer(0)
	for {
		select {
		case s := <-sigs:
			sig := s.(syscall.Signal)
			if sig != syscall.SIGCHLD {
				if sig == syscall.SIGTERM || sig == syscall.SIGINT || sig == syscall.SIGQUIT {
					g.terminating = true
					if g.pid == 0 {
						os.Exit(0)
					}
				}
				if g.pid != 0 {
					syscall.Kill(g.pid, sig)
				}
			}
		case <-timer.C:
		}
		if exited, code := g.reap(); exited {
			wasStopping := g.stopping
			g.killGroup()
			g.pid, g.stopping = 0, false
			c := code
			g.writeAck(false, &c, fmt.Sprintf("app exited with status %d", code))
			if g.terminating || !wasStopping {
				logf("app exited with status %d; gate exits", code)
				os.Exit(code)
			}
			logf("app stopped (status %d); waiting for this member to be active again", code)
		}
		now := monotonic()
		g.step(now)
		wait := *poll
		if st := g.lastState; g.pid != 0 && st != nil && st.FenceDeadline != nil {
			if left := time.Duration((*st.FenceDeadline - now) * float64(time.Second)); left < wait && left > 0 {
				wait = left + time.Millisecond // wake exactly when the deadline passes
			}
		}
		if g.stopping && g.killAt-now < wait.Seconds() {
			wait = time.Duration((g.killAt-now)*float64(time.Second)) + time.Millisecond
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
	}
}
