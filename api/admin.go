package api

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
)

// The local admin credential lets the CLI on the server's own machine act as a CA operator before any operator
// certificate exists. It is a random bearer secret in a file readable only by its owner (mode 0600), created at
// first start. The server accepts it only from a loopback peer address, compares it in constant time, and gives
// it the operator role with subject "admin:local". It is not a second operator: dual control still needs an
// operator certificate for the other approval.

const adminPrefix = "mohr-admin-"

// errAdminFile is returned for a credential file with the wrong mode or owner.
var errAdminFile = errors.New("api: admin credential file must be a regular file of mode 0600 owned by this user")

// EnsureAdminCredential creates the admin credential file at path if it does not exist (32 random bytes,
// mode 0600, created exclusively) and returns the secret. An existing file is checked (regular, mode 0600,
// owned by the current user) and read.
func EnsureAdminCredential(path string) (secret string, created bool, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", false, fmt.Errorf("api: admin credential: %w", err)
	}
	secret = adminPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case err == nil:
		if _, err := f.WriteString(secret + "\n"); err != nil {
			f.Close()
			os.Remove(path)
			return "", false, fmt.Errorf("api: write admin credential: %w", err)
		}
		if err := f.Close(); err != nil {
			os.Remove(path)
			return "", false, fmt.Errorf("api: write admin credential: %w", err)
		}
		return secret, true, nil
	case errors.Is(err, fs.ErrExist):
		s, err := ReadAdminCredential(path)
		return s, false, err
	default:
		return "", false, fmt.Errorf("api: create admin credential: %w", err)
	}
}

// ReadAdminCredential reads the secret from path after checking that the file is a regular file of mode 0600
// owned by the current user. The CLI uses it to build its Authorization header.
func ReadAdminCredential(path string) (string, error) {
	info, err := os.Lstat(path)
	if err != nil {
		return "", fmt.Errorf("api: admin credential: %w", err)
	}
	if !info.Mode().IsRegular() || info.Mode().Perm() != 0o600 {
		return "", errAdminFile
	}
	if st, ok := info.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Getuid() {
		return "", errAdminFile
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("api: admin credential: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if !strings.HasPrefix(s, adminPrefix) || len(s) < len(adminPrefix)+43 {
		return "", errors.New("api: admin credential file is malformed")
	}
	return s, nil
}

// adminCredential checks bearer secrets against the stored one.
type adminCredential struct {
	digest [sha256.Size]byte
}

func newAdminCredential(secret string) *adminCredential {
	return &adminCredential{digest: sha256.Sum256([]byte(secret))}
}

// matches compares in constant time. Hashing first makes the comparison independent of the presented length.
func (a *adminCredential) matches(presented string) bool {
	d := sha256.Sum256([]byte(presented))
	return subtle.ConstantTimeCompare(d[:], a.digest[:]) == 1
}

// bearer returns the token of an "Authorization: Bearer" header, and whether there was an Authorization header.
func bearer(r *http.Request) (token string, present bool) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", false
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", true
	}
	return strings.TrimSpace(tok), true
}

// isLoopback reports whether the request's TCP peer is a loopback address. It reads RemoteAddr only, never a
// forwarding header: behind a proxy nothing is loopback unless the proxy is, so do not put a proxy on the same
// machine in front of this server with the admin credential enabled.
func isLoopback(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
