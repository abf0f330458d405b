//go:build !unix

package revocation

import "fmt"

// lock is not available: the directory sink needs flock(2) to share a directory between nodes.
func (s *DirSink) lock() (func(), error) {
	return nil, fmt.Errorf("%w: the OCSP directory sink needs a Unix system", ErrConfig)
}
