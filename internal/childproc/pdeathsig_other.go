//go:build !linux

package childproc

import "syscall"

// setParentDeathSignal does nothing where the kernel has no parent-death
// signal: the group kills of Watch remain.
func setParentDeathSignal(*syscall.SysProcAttr) {}
