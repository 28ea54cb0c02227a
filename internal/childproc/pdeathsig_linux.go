package childproc

import "syscall"

// setParentDeathSignal has the kernel SIGKILL the child when the thread
// that started it exits.
func setParentDeathSignal(attr *syscall.SysProcAttr) { attr.Pdeathsig = syscall.SIGKILL }
