package agent

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
)

// ErrTokenFile: the per-installation secret file is unusable (readable by others, too short).
var ErrTokenFile = errors.New("agent: bad token file")

// minToken is the shortest secret accepted from a file (characters of base64url: 32 bytes give 43).
const minToken = 32

// LoadOrCreateToken returns the per-installation secret the EMR sends as a bearer token. It reads path, or
// creates it with 32 random bytes in base64url and mode 0600 if it does not exist. A file that group or
// others may read or write is refused, as is a short one.
func LoadOrCreateToken(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		var raw [32]byte
		if _, err := rand.Read(raw[:]); err != nil {
			return nil, fmt.Errorf("agent: token: %w", err)
		}
		tok := []byte(base64.RawURLEncoding.EncodeToString(raw[:]))
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("agent: token: %w", err)
		}
		_, werr := f.Write(append(tok, '\n'))
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			os.Remove(path)
			return nil, fmt.Errorf("agent: token: %w", werr)
		}
		return tok, nil
	}
	if err != nil {
		return nil, fmt.Errorf("agent: token: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s must be a regular file with mode 0600", ErrTokenFile, path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("agent: token: %w", err)
	}
	b = bytes.TrimSpace(b)
	if len(b) < minToken {
		return nil, fmt.Errorf("%w: %s holds fewer than %d characters", ErrTokenFile, path, minToken)
	}
	return b, nil
}
