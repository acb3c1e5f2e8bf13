package power

import (
	"os/exec"
	"runtime"
)

// Start starts cmd and returns a channel closed once it has exited and
// been waited for. The child is forked from an OS thread kept until then:
// a parent-death signal (SysProcAttr.Pdeathsig, which kills a payload
// with its bus) fires when the thread that forked the child ends, and Go
// ends a thread whenever a goroutine that locked it returns (netlab does,
// on purpose). start, if set, runs cmd.Start there instead (Process's
// Within).
func Start(cmd *exec.Cmd, start func() error) (<-chan struct{}, error) {
	if start == nil {
		start = cmd.Start
	}
	started := make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		err := start()
		started <- err
		if err == nil {
			cmd.Wait()
			close(exited)
		}
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return exited, nil
}
