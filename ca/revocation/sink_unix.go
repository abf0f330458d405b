//go:build unix

package revocation

import (
	"fmt"
	"os"
	"syscall"
)

// lock takes the directory's exclusive lock (flock(2): held by this open file, released when it is closed or
// the process dies), so nodes sharing the directory write one at a time.
func (s *DirSink) lock() (func(), error) {
	f, err := os.OpenFile(s.lockFile, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("revocation: OCSP directory lock: %w", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("revocation: OCSP directory lock: %w", err)
	}
	return func() { f.Close() }, nil
}
