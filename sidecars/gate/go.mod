module hastack.io/gate

go 1.22
