package revocation

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/mohr-hix/mohr/ca"
)

// Sink receives the responder's pre-signed responses as they are signed here or taken from the store, and
// hears when a certificate's responses are withdrawn: Remove(serial, v) drops responses signed from a record
// version older than v (a status change whose new responses are being signed), or any (v zero: the
// certificate expired). A DirSink is one. Its errors go to ResponderConfig.OnError: the responder serves from
// memory either way.
type Sink interface {
	Put(recs []ca.OCSPRecord) error
	Remove(serial string, olderThan time.Time) error
}

// DirSink keeps a directory in which every pre-signed OCSP response lies under the path of its RFC 5019 GET
// request, so that a static web server or a CDN can answer GET requests with no Mohr behind it:
//
//	<dir>/<base64 of the DER OCSPRequest>
//
// where the request is the one RFC 5019 §2.1 clients send: one CertID (SHA-1, or SHA-256), no extensions,
// no nonce, no signature, as golang.org/x/crypto/ocsp and `openssl ocsp -no_nonce` build it. The base64 is
// the standard alphabet with padding; its '/' characters make subdirectories, which is what a static server
// maps the URL path "/<base64>" to (a client that escapes them as %2F reaches the same file: servers decode
// the path before mapping it; "//" in the base64 becomes one "/" in both the file system and the servers'
// path cleaning). A base64 that ends in "/" names a directory: its response is that directory's index.html,
// which static servers answer such a path with. A file's modification time is the response's thisUpdate
// (the servers' Last-Modified).
//
// Writes are atomic (a temporary file in <dir>/.mohr/tmp renamed over the old one), so a server reads either
// the old or the new response, never a part. A write that would change nothing (the same bytes, or a response
// as fresh from the same record version that another node wrote) is not made. Files are not fsynced: the
// database holds every response (ca.OCSPStore) and the directory is a cache of it. A process killed mid-write
// cannot leave a short file (the rename is atomic); only a crash of the machine can, losing data the kernel
// had not written yet, and every node that starts reconciles the directory with the database
// (Reconcile, which reads every file back), so such a file is repaired when the machine's nodes start again.
// A node killed in the middle of a write leaves
// its temporary file there; whoever takes the lock next removes it (nobody else writes while the lock is held,
// so every file in .mohr/tmp then is an orphan). Several nodes may share the directory:
// each write takes an exclusive lock (<dir>/.mohr/lock), and a response signed from an older version of
// the certificate record (then an older thisUpdate) never replaces a newer one, the rule the database
// applies (ca.OCSPStore); the versions are kept in <dir>/.mohr/versions. Serve the directory without
// its ".mohr" entry (docs/cluster.md has nginx and HAProxy configurations).
type DirSink struct {
	dir      string
	issuer   *x509.Certificate
	lockFile string
	tmpDir   string
}

// NewDirSink returns a DirSink writing into dir (created if missing) for the certificates of issuer.
func NewDirSink(dir string, issuer *x509.Certificate) (*DirSink, error) {
	if dir == "" || issuer == nil {
		return nil, fmt.Errorf("%w: OCSP directory and issuer required", ErrConfig)
	}
	for _, sub := range []string{"versions", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, ".mohr", sub), 0o755); err != nil {
			return nil, fmt.Errorf("revocation: OCSP directory: %w", err)
		}
	}
	s := &DirSink{dir: dir, issuer: issuer, lockFile: filepath.Join(dir, ".mohr", "lock"), tmpDir: filepath.Join(dir, ".mohr", "tmp")}
	unlock, err := s.locked() // fails now, not at the first write, where locks are not available
	if err != nil {
		return nil, err
	}
	unlock()
	return s, nil
}

// Path returns the file of serial's response for CertIDs hashed with h (crypto.SHA1 or crypto.SHA256).
func (s *DirSink) Path(serial string, h crypto.Hash) (string, error) {
	n, ok := new(big.Int).SetString(serial, 16)
	if !ok || n.Sign() <= 0 {
		return "", fmt.Errorf("%w: %q", ErrBadSerial, serial)
	}
	req, err := ocsp.CreateRequest(&x509.Certificate{SerialNumber: n}, s.issuer, &ocsp.RequestOptions{Hash: h})
	if err != nil {
		return "", fmt.Errorf("revocation: OCSP request for %s: %w", serial, err)
	}
	b64 := base64.StdEncoding.EncodeToString(req)
	if strings.HasSuffix(b64, "/") {
		// A URL path ending in "/" names a directory to every static server, which answers it with the
		// directory's index file (net/http's FileServer redirects a file there; openssl follows no redirect).
		return filepath.Join(s.dir, filepath.FromSlash(b64), "index.html"), nil
	}
	return filepath.Join(s.dir, filepath.FromSlash(b64)), nil
}

// Put writes the responses of recs, unless a response from a newer record version (or, for the same
// version, a later thisUpdate) is there already.
func (s *DirSink) Put(recs []ca.OCSPRecord) error {
	if len(recs) == 0 {
		return nil
	}
	return s.putAll(recs, false)
}

// Reconcile is Put for a node that starts: recs are the responses the database holds, and the directory may
// have lost writes to a crash of the machine (files are not fsynced). Where Put trusts a response the
// directory already has for the same record version, as fresh or fresher, Reconcile reads it back and
// rewrites it unless it is the bytes of recs or a whole response for the serial with the recorded thisUpdate
// (another node's signature of the same status).
func (s *DirSink) Reconcile(recs []ca.OCSPRecord) error {
	if len(recs) == 0 {
		return nil
	}
	return s.putAll(recs, true)
}

func (s *DirSink) putAll(recs []ca.OCSPRecord, check bool) error {
	unlock, err := s.locked()
	if err != nil {
		return err
	}
	defer unlock()
	var errs []error
	for _, rec := range recs {
		if err := s.put(rec, check); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (s *DirSink) put(rec ca.OCSPRecord, check bool) error {
	serial, err := NormalizeSerial(rec.Serial)
	if err != nil {
		return err
	}
	vfile := filepath.Join(s.dir, ".mohr", "versions", serial)
	if v, t, ok := readVersion(vfile); ok && rec.CertVersion.Before(v) {
		return nil // signed from an older version of the record than what is there
	} else if ok && rec.CertVersion.Equal(v) && !rec.ThisUpdate.After(t) {
		// The same version, as fresh or fresher: kept, if it is there (and, when reconciling, whole).
		if s.kept(serial, rec, t, check) {
			return nil
		}
		// Not there or damaged: rec's responses go in, and the version file says what they are now.
	}
	for i, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
		p, err := s.Path(serial, h)
		if err != nil {
			return err
		}
		if rec.DER[i] == nil {
			// Not pre-signed for this hash (ResponderConfig.PresignSHA1Only): whatever an older version left
			// there must go.
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("revocation: OCSP directory: %w", err)
			}
			continue
		}
		if err := writeAtomic(s.tmpDir, p, rec.DER[i], rec.ThisUpdate); err != nil {
			return err
		}
	}
	line := rec.CertVersion.UTC().Format(time.RFC3339Nano) + " " + rec.ThisUpdate.UTC().Format(time.RFC3339Nano) + "\n"
	return writeAtomic(s.tmpDir, vfile, []byte(line), time.Time{})
}

// Remove deletes serial's responses if they were signed from a record version older than olderThan, or
// whatever they are if olderThan is zero. The version record stays, so a late write of an older version is
// still refused. Responses another node already wrote for the new version stay.
func (s *DirSink) Remove(serial string, olderThan time.Time) error {
	serial, err := NormalizeSerial(serial)
	if err != nil {
		return err
	}
	unlock, err := s.locked()
	if err != nil {
		return err
	}
	defer unlock()
	if v, _, ok := readVersion(filepath.Join(s.dir, ".mohr", "versions", serial)); ok && !olderThan.IsZero() && !v.Before(olderThan) {
		return nil
	}
	for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
		p, err := s.Path(serial, h)
		if err != nil {
			return err
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("revocation: OCSP directory: %w", err)
		}
	}
	return nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// kept reports whether the directory's responses for serial, recorded (in the version file) as signed from
// rec's record version with thisUpdate t, are there: the SHA-1 one exists (Put), or, with check, every hash
// rec has is whole (Reconcile). A whole file is rec's bytes, or a response for serial with thisUpdate t.
func (s *DirSink) kept(serial string, rec ca.OCSPRecord, t time.Time, check bool) bool {
	if !check {
		p, err := s.Path(serial, crypto.SHA1)
		return err == nil && exists(p)
	}
	n, _ := new(big.Int).SetString(serial, 16)
	for i, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
		if rec.DER[i] == nil {
			continue
		}
		p, err := s.Path(serial, h)
		if err != nil {
			return false
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return false
		}
		if bytes.Equal(b, rec.DER[i]) {
			continue
		}
		// Parsed without the issuer: no signature is checked, this only tells a whole response from a
		// truncated or emptied file (the directory is written by the nodes alone).
		resp, err := ocsp.ParseResponse(b, nil)
		if err != nil || resp.SerialNumber == nil || resp.SerialNumber.Cmp(n) != 0 || !resp.ThisUpdate.Equal(t.Truncate(time.Second)) {
			return false
		}
	}
	return true
}

func readVersion(path string) (version, thisUpdate time.Time, ok bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return time.Time{}, time.Time{}, false
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return time.Time{}, time.Time{}, false
	}
	v, err1 := time.Parse(time.RFC3339Nano, f[0])
	t, err2 := time.Parse(time.RFC3339Nano, f[1])
	return v, t, err1 == nil && err2 == nil
}

// locked takes the directory's lock and removes the temporary files a writer killed mid-write left behind.
func (s *DirSink) locked() (func(), error) {
	unlock, err := s.lock()
	if err != nil {
		return nil, err
	}
	if left, err := os.ReadDir(s.tmpDir); err == nil {
		for _, e := range left {
			os.Remove(filepath.Join(s.tmpDir, e.Name()))
		}
	}
	return unlock, nil
}

// writeAtomic replaces path with data: a temporary file in tmpDir (on the same file system) renamed over it,
// not synced (DirSink says why). A non-zero mtime becomes the file's modification time. An identical file is left alone.
func writeAtomic(tmpDir, path string, data []byte, mtime time.Time) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("revocation: OCSP directory: %w", err)
	}
	f, err := os.CreateTemp(tmpDir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("revocation: OCSP directory: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && !mtime.IsZero() {
		err = os.Chtimes(tmp, mtime, mtime)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("revocation: OCSP directory: %w", err)
	}
	return nil
}
