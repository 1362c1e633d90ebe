package app

import (
	"fmt"
	"os"
	"syscall"
	"testing"
	"unsafe"
)

// A terminal does get colour: colourful tells a pseudo-terminal from the pipe and the file it refuses.
func TestColourfulOnTerminal(t *testing.T) {
	t.Setenv("NO_COLOR", "")
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	defer ptmx.Close()
	var n, unlock uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, ptmx.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		t.Skipf("unlock pty: %v", e)
	}
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, ptmx.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
		t.Skipf("pty number: %v", e)
	}
	tty, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("open pty: %v", err)
	}
	defer tty.Close()
	if !colourful(tty) {
		t.Errorf("a pseudo-terminal is not colourful")
	}
	t.Setenv("NO_COLOR", "1")
	if colourful(tty) {
		t.Errorf("NO_COLOR set, still colourful")
	}
}
