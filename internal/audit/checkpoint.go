package audit

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"unicode"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// OriginPrefix starts the origin line of every Mohr audit checkpoint and the name of every audit key.
const OriginPrefix = "mohr.audit/"

// Origin returns the origin line (without newline) of the checkpoints of the log called name; it is also the
// name of the note key that signs them.
func Origin(name string) string { return OriginPrefix + name }

func checkName(name string) error {
	if name == "" || strings.IndexFunc(name, func(r rune) bool { return unicode.IsSpace(r) || r == '+' }) >= 0 {
		return fmt.Errorf("audit: invalid log name %q", name)
	}
	return nil
}

// GenerateKey returns a new Ed25519 note key pair for the log called name, in the encodings of
// golang.org/x/mod/sumdb/note: skey is secret (keep it in a file of mode 0600), vkey is what auditors get.
func GenerateKey(name string) (skey, vkey string, err error) {
	if err := checkName(name); err != nil {
		return "", "", err
	}
	skey, vkey, err = note.GenerateKey(rand.Reader, Origin(name))
	if err != nil {
		return "", "", fmt.Errorf("audit: generate key: %w", err)
	}
	return skey, vkey, nil
}

// NewSigner returns a note.Signer for the log called name over an Ed25519 crypto.Signer, so the audit key can
// live in an HSM. It checks every signature against the public key before returning it.
func NewSigner(name string, key crypto.Signer) (note.Signer, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	pub, ok := key.Public().(ed25519.PublicKey)
	if !ok || len(pub) != ed25519.PublicKeySize {
		return nil, errors.New("audit: checkpoint key is not Ed25519")
	}
	vkey, err := note.NewEd25519VerifierKey(Origin(name), pub)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return &ed25519Signer{key: key, pub: pub, name: v.Name(), hash: v.KeyHash()}, nil
}

// ed25519Signer adapts a crypto.Signer holding an Ed25519 key to note.Signer.
type ed25519Signer struct {
	key  crypto.Signer
	pub  ed25519.PublicKey
	name string
	hash uint32
}

var _ note.Signer = (*ed25519Signer)(nil)

func (s *ed25519Signer) Name() string    { return s.name }
func (s *ed25519Signer) KeyHash() uint32 { return s.hash }

// Sign signs msg with pure Ed25519 (RFC 8032; crypto.Hash(0) selects it) and verifies the result.
func (s *ed25519Signer) Sign(msg []byte) ([]byte, error) {
	sig, err := s.key.Sign(rand.Reader, msg, crypto.Hash(0))
	if err != nil {
		return nil, fmt.Errorf("audit: sign checkpoint: %w", err)
	}
	if !ed25519.Verify(s.pub, msg, sig) {
		return nil, errors.New("audit: checkpoint key returned an invalid signature")
	}
	return sig, nil
}

// Checkpointer signs checkpoints of one log.
type Checkpointer struct {
	origin string
	signer note.Signer
}

// NewCheckpointer returns a Checkpointer for the log called name. The signer's name must be Origin(name), as
// the keys of GenerateKey and NewSigner are.
func NewCheckpointer(name string, signer note.Signer) (*Checkpointer, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if signer == nil || signer.Name() != Origin(name) {
		return nil, fmt.Errorf("audit: checkpoint key is not named %q", Origin(name))
	}
	return &Checkpointer{origin: Origin(name), signer: signer}, nil
}

// Origin returns the origin line of the checkpoints c signs.
func (c *Checkpointer) Origin() string { return c.origin }

// Sign returns a signed note over the checkpoint of tree:
//
//	mohr.audit/<name>
//	<tree size, decimal>
//	<root hash, base64>
//
// followed by a blank line and the signature line. The body is the C2SP tlog-checkpoint layout: the lines of
// tlog.FormatTree with its fixed first line ("go.sum database tree") replaced by the log's origin.
func (c *Checkpointer) Sign(tree tlog.Tree) ([]byte, error) {
	msg, err := note.Sign(&note.Note{Text: formatCheckpoint(c.origin, tree)}, c.signer)
	if err != nil {
		return nil, fmt.Errorf("audit: sign checkpoint: %w", err)
	}
	return msg, nil
}

var goSumTreeLine = []byte("go.sum database tree\n")

func formatCheckpoint(origin string, tree tlog.Tree) string {
	return origin + "\n" + string(bytes.TrimPrefix(tlog.FormatTree(tree), goSumTreeLine))
}

// OpenCheckpoint verifies a signed checkpoint with the verifier key vkey and returns the tree it commits to.
// The origin line must equal the key's name.
func OpenCheckpoint(msg []byte, vkey string) (tlog.Tree, error) {
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return tlog.Tree{}, fmt.Errorf("audit: verifier key: %w", err)
	}
	return openCheckpoint(msg, v)
}

func openCheckpoint(msg []byte, v note.Verifier) (tlog.Tree, error) {
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		return tlog.Tree{}, fmt.Errorf("audit: checkpoint signature: %w", err)
	}
	return parseCheckpoint(n.Text, v.Name())
}

func parseCheckpoint(text, origin string) (tlog.Tree, error) {
	first, rest, ok := strings.Cut(text, "\n")
	if !ok || first != origin {
		return tlog.Tree{}, fmt.Errorf("audit: checkpoint origin is not %q", origin)
	}
	tree, err := tlog.ParseTree(append(append([]byte(nil), goSumTreeLine...), rest...))
	if err != nil {
		return tlog.Tree{}, fmt.Errorf("audit: checkpoint: %w", err)
	}
	return tree, nil
}

// peekCheckpointSize returns the tree size a checkpoint claims without checking its signature, so a bad
// checkpoint can be reported at its place in the log.
func peekCheckpointSize(msg []byte) (int64, bool) {
	i := strings.LastIndex(string(msg), "\n\n")
	if i < 0 {
		return 0, false
	}
	text := string(msg[:i+1])
	first, _, _ := strings.Cut(text, "\n")
	tree, err := parseCheckpoint(text, first)
	if err != nil {
		return 0, false
	}
	return tree.N, true
}
