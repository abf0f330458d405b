package main

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/mohr-hix/mohr/api"
	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/internal/audit"
	"github.com/mohr-hix/mohr/internal/store"
	"github.com/mohr-hix/mohr/signing"
)

// This file holds what lets several `mohr serve` nodes share one database: one audit identity, checkpoints
// under a lease, approvals in the database, trust anchors that follow the change feed, and readiness that
// follows the database.

// clusterStore is what the nodes share through the database, beyond ca.Store and the audit log.
type clusterStore interface {
	PutBlob(ctx context.Context, name string, data []byte, evs ...audit.Event) error
	GetBlob(ctx context.Context, name string) ([]byte, error)
	ClaimLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
	LatestCheckpointTime(ctx context.Context) (time.Time, error)
	AddApproval(ctx context.Context, a store.Approval, max int, ev audit.Event) error
	PendingApproval(ctx context.Context, id string) (store.Approval, error)
	PendingApprovals(ctx context.Context) ([]store.Approval, error)
	GrantApproval(ctx context.Context, id, approvedBy string, ev audit.Event) error
	FinishApproval(ctx context.Context, id, status string, ev audit.Event) error
}

// newNodeID names this process in leases: host, pid and a random part (a restarted node is a new holder).
func newNodeID() string {
	h, _ := os.Hostname()
	var r [4]byte
	rand.Read(r[:])
	return fmt.Sprintf("%s/%d/%s", h, os.Getpid(), hex.EncodeToString(r[:]))
}

// ---- the audit identity ----

// auditIdentity is the checkpoint key of the deployment.
type auditIdentity struct {
	cp        *audit.Checkpointer
	vkey      string
	generated bool // made by this start (no key existed)
}

// loadAuditIdentity resolves the configured checkpoint key (audit.key), or the data directory's, making that
// one if it does not exist.
func loadAuditIdentity(ctx context.Context, cfg *Config) (auditIdentity, error) {
	uri := cfg.Audit.Key
	var id auditIdentity
	if uri == "" {
		path := auditKeyPath(auditSKeyFile)
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			skey, vkey, err := audit.GenerateKey(cfg.Audit.Name)
			if err != nil {
				return id, err
			}
			flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
			if err := writeAuditKeyFile(path, skey, flags, 0o600); err != nil {
				return id, err
			}
			if err := writeAuditKeyFile(auditKeyPath(auditVKeyFile), vkey, flags, 0o644); err != nil {
				return id, err
			}
			id.generated = true
		}
		uri = "file:" + path
	}
	switch {
	case strings.HasPrefix(uri, "file:"):
		name, key, err := readNoteSignerKey(strings.TrimPrefix(uri, "file:"))
		if err != nil {
			return id, err
		}
		return finishIdentity(id, name, key)
	case strings.HasPrefix(uri, "pkcs11:"):
		key, err := newKeyResolver().Signer(ctx, uri)
		if err != nil {
			return id, fmt.Errorf("audit key: %w", err)
		}
		return finishIdentity(id, cfg.Audit.Name, key)
	}
	return id, fmt.Errorf("audit.key must be a file: or pkcs11: URI")
}

func finishIdentity(id auditIdentity, name string, key crypto.Signer) (auditIdentity, error) {
	signer, err := audit.NewSigner(name, key)
	if err != nil {
		return id, err
	}
	if id.cp, err = audit.NewCheckpointer(name, signer); err != nil {
		return id, err
	}
	pub, _ := key.Public().(ed25519.PublicKey) // NewSigner checked it
	if id.vkey, err = note.NewEd25519VerifierKey(audit.Origin(name), pub); err != nil {
		return id, err
	}
	return id, nil
}

// readNoteSignerKey reads a note signer key file (golang.org/x/mod/sumdb/note: PRIVATE+KEY+<name>+<hash>+<key>),
// refusing a file others can read, and returns the log name and the Ed25519 key. The note package has no
// accessor for the key, so the documented encoding is decoded here (algorithm byte 1, then the 32-byte seed).
func readNoteSignerKey(path string) (string, crypto.Signer, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", nil, fmt.Errorf("audit signer key: %w (run `mohr audit keygen`)", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", nil, fmt.Errorf("audit signer key %s has mode %v; it must be 0600", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", nil, fmt.Errorf("audit signer key: %w", err)
	}
	skey := strings.TrimSpace(string(b))
	malformed := fmt.Errorf("audit signer key %s is malformed", path) // never echo the key
	signer, err := note.NewSigner(skey)
	if err != nil {
		return "", nil, malformed
	}
	name, ok := strings.CutPrefix(signer.Name(), audit.OriginPrefix)
	if !ok {
		return "", nil, fmt.Errorf("audit signer key %s is not named %s<name>", path, audit.OriginPrefix)
	}
	// Names hold no '+' (note.NewSigner checked), base64 may.
	parts := strings.SplitN(strings.TrimPrefix(skey, "PRIVATE+KEY+"), "+", 3)
	if len(parts) != 3 {
		return "", nil, malformed
	}
	raw, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return "", nil, malformed
	}
	return name, ed25519.NewKeyFromSeed(raw[1:]), nil
}

// auditKeyBlob holds the verifier key of the checkpoint key in use, so each node can tell a rotation.
const auditKeyBlob = "audit/active-vkey"

// recordAuditKey records in the audit log (audit.EventKeyActivated) that id's key signs checkpoints, unless
// the log already says so. A key this start generated while the log names another is refused: that is a
// node with its own key, which would make the log unverifiable with the deployment's key.
func recordAuditKey(ctx context.Context, st appStore, id auditIdentity, actor string) error {
	cur, err := st.GetBlob(ctx, auditKeyBlob)
	if err != nil && !errors.Is(err, ca.ErrNotFound) {
		return err
	}
	if retired, err := auditKeyRetired(ctx, st, id.vkey); err != nil || retired {
		if err != nil {
			return err
		}
		return fmt.Errorf("the checkpoint key %s was retired (audit.key.retired): it signs nothing any more; "+
			"configure audit.key with the deployment's current key", id.vkey)
	}
	if strings.TrimSpace(string(cur)) == id.vkey {
		return nil
	}
	if len(cur) > 0 && id.generated {
		return fmt.Errorf("the audit log is checkpointed with the key %s, but this node generated its own: "+
			"configure audit.key with the deployment's key on every node", strings.TrimSpace(string(cur)))
	}
	data, _ := json.Marshal(map[string]string{"vkey": id.vkey, "previous": strings.TrimSpace(string(cur))})
	ev := audit.Event{Time: time.Now().UTC(), Kind: audit.EventKeyActivated, Actor: actor, Subject: id.cp.Origin(), Data: data}
	return st.PutBlob(ctx, auditKeyBlob, []byte(id.vkey), ev)
}

// auditRetiredBlob names the blob that marks vkey retired (`mohr audit retire-key`, written in the transaction
// of its audit.key.retired event): one blob per key, so that two retirements never overwrite each other.
func auditRetiredBlob(vkey string) string {
	h := sha256.Sum256([]byte(strings.TrimSpace(vkey)))
	return "audit/retired/" + hex.EncodeToString(h[:])
}

// auditKeyRetired reports whether the log retired vkey. A node whose key was retired neither starts nor signs
// checkpoints: `mohr audit verify` would refuse what it signs.
func auditKeyRetired(ctx context.Context, st clusterStore, vkey string) (bool, error) {
	_, err := st.GetBlob(ctx, auditRetiredBlob(vkey))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ca.ErrNotFound):
		return false, nil
	}
	return false, err
}

// trustedVKeys returns the verifier keys of the log's history: the audit.vkeys file (or --vkey), one per line,
// plus extra.
func trustedVKeys(cfg *Config, path string, extra ...string) ([]string, error) {
	if path == "" {
		path = cfg.Audit.VKeys
	}
	if path == "" {
		path = auditKeyPath(auditVKeyFile)
	}
	b, err := os.ReadFile(path)
	if err != nil && !(errors.Is(err, os.ErrNotExist) && len(extra) > 0) {
		return nil, fmt.Errorf("audit verifier keys: %w", err)
	}
	seen := map[string]bool{}
	var out []string
	for _, k := range append(strings.Split(string(b), "\n"), extra...) {
		k = strings.TrimSpace(k)
		if k == "" || strings.HasPrefix(k, "#") || seen[k] {
			continue
		}
		if _, err := note.NewVerifier(k); err != nil {
			return nil, fmt.Errorf("audit verifier key in %s: %w", path, err)
		}
		seen[k] = true
		out = append(out, k)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("audit verifier keys: %s holds none", path)
	}
	return out, nil
}

// checkpointLease is the lease whose holder signs the cluster's checkpoints.
const checkpointLease = "audit-checkpoint"

// checkpointDue signs a checkpoint if this node holds the checkpoint lease, the newest checkpoint is at least
// interval old and the log has grown since. It reports whether it signed one.
//
// A node whose key was retired after it started (`mohr audit retire-key` run while it still had the old
// configuration) signs nothing and does not take the lease, so that a node with the current key signs instead.
func checkpointDue(ctx context.Context, st appStore, id auditIdentity, holder string, interval time.Duration, now time.Time) (bool, error) {
	if retired, err := auditKeyRetired(ctx, st, id.vkey); err != nil || retired {
		if err == nil {
			err = fmt.Errorf("not signing checkpoints: this node's checkpoint key %s was retired; configure audit.key with the current key and restart", id.vkey)
		}
		return false, err
	}
	cp := id.cp
	ok, err := st.ClaimLease(ctx, checkpointLease, holder, 2*interval)
	if err != nil || !ok {
		return false, err
	}
	last, err := st.LatestCheckpointTime(ctx)
	if err != nil {
		return false, err
	}
	if !last.IsZero() && now.Sub(last) < interval*9/10 {
		return false, nil
	}
	size, err := st.AuditSize(ctx)
	if err != nil || size == 0 {
		return false, err
	}
	cps, err := st.AuditCheckpoints(ctx)
	if err != nil {
		return false, err
	}
	if len(cps) > 0 {
		if n, ok := checkpointSize(cps[len(cps)-1]); ok && n >= size {
			return false, nil
		}
	}
	return true, st.Checkpoint(ctx, cp)
}

// checkpointSize reads the tree size line of a stored checkpoint (its signature is audit verify's business).
func checkpointSize(msg []byte) (int64, bool) {
	lines := strings.SplitN(string(msg), "\n", 3)
	if len(lines) < 3 {
		return 0, false
	}
	var n int64
	_, err := fmt.Sscan(lines[1], &n)
	return n, err == nil
}

// ---- approvals ----

// approvalStore implements api.ApprovalStore with the database.
type approvalStore struct{ st appStore }

func toStoreApproval(a api.Approval) store.Approval {
	return store.Approval{ID: a.ID, Operation: a.Operation, Params: a.Params, RequestedBy: a.RequestedBy,
		Requester: a.Requester, RequesterDN: a.RequesterDN, CreatedAt: a.CreatedAt, ExpiresAt: a.ExpiresAt, Status: a.Status}
}

func fromStoreApproval(a store.Approval) api.Approval {
	return api.Approval{ID: a.ID, Operation: a.Operation, Params: json.RawMessage(a.Params), RequestedBy: a.RequestedBy,
		Requester: a.Requester, RequesterDN: a.RequesterDN, CreatedAt: a.CreatedAt, ExpiresAt: a.ExpiresAt, Status: a.Status}
}

func (s approvalStore) AddApproval(ctx context.Context, a api.Approval, max int, ev audit.Event) error {
	return s.st.AddApproval(ctx, toStoreApproval(a), max, ev)
}

func (s approvalStore) PendingApproval(ctx context.Context, id string) (api.Approval, error) {
	a, err := s.st.PendingApproval(ctx, id)
	return fromStoreApproval(a), err
}

func (s approvalStore) PendingApprovals(ctx context.Context) ([]api.Approval, error) {
	as, err := s.st.PendingApprovals(ctx)
	out := make([]api.Approval, len(as))
	for i, a := range as {
		out[i] = fromStoreApproval(a)
	}
	return out, err
}

func (s approvalStore) GrantApproval(ctx context.Context, id, approvedBy string, ev audit.Event) error {
	return s.st.GrantApproval(ctx, id, approvedBy, ev)
}

func (s approvalStore) FinishApproval(ctx context.Context, id, status string, ev audit.Event) error {
	return s.st.FinishApproval(ctx, id, status, ev)
}

// ---- trust anchors ----

// trustAnchorsBlob holds the PEM trust anchors set under dual control, for every node.
const trustAnchorsBlob = "trust-anchors.pem"

// eventTrustAnchors is the audit event of a trust-anchor change; the change feed reloads on it.
const eventTrustAnchors = "trust-anchors.changed"

// loadTrustAnchors returns the roots signatures are verified against: those set under dual control (in the
// database), else <data-dir>/trust-anchors.pem (older versions kept them there), else the CA's own root.
func loadTrustAnchors(ctx context.Context, cfg *Config, st appStore, root *x509.Certificate) ([]*x509.Certificate, error) {
	b, err := st.GetBlob(ctx, trustAnchorsBlob)
	switch {
	case err == nil:
		as, perr := parsePEMCerts(b)
		if perr != nil || len(as) == 0 {
			return nil, errors.New("trust anchors in the database do not parse")
		}
		return as, nil
	case !errors.Is(err, ca.ErrNotFound):
		return nil, err
	}
	anchors, err := readCerts(trustAnchorsFile(cfg))
	switch {
	case err == nil:
		return anchors, nil
	case errors.Is(err, os.ErrNotExist):
		return []*x509.Certificate{root}, nil
	default:
		return nil, fmt.Errorf("trust anchors: %w", err)
	}
}

// verifiers are the node's verification services over one set of trust anchors; the node swaps the whole set
// when the anchors change.
type verifiers struct {
	v      *signing.Verifier
	ingest *signing.Ingestor
	batch  *signing.BatchVerifier
}

// buildVerifiers makes the verification services over roots.
func (n *node) buildVerifiers(roots []*x509.Certificate) (*verifiers, error) {
	// The configured trust policy; by default the anchors set under dual control, this CA's intermediate as
	// signer CA (and anchor) and this node's TSA key.
	trust, err := n.cfg.Validation.trustPolicy(n.cfg, trustDefaults{anchors: roots, intermediate: n.ca.Issuer().Cert, tsas: n.tsaCerts})
	if err != nil {
		return nil, err
	}
	v, err := signing.NewVerifier(signing.VerifierConfig{Trust: trust, Revocation: localOCSP(n.ocsp),
		CRLs:     &signing.HTTPCRLs{Timeout: 5 * time.Second},
		Registry: physicianRegistry{n.ts}, Now: n.cfg.clock(),
		// Answers of the node's own responder are kept a minute (a revocation it learns of shows within that).
		RevocationCache: 100000, RevocationCacheTTL: time.Minute})
	if err != nil {
		return nil, err
	}
	return &verifiers{
		v: v,
		ingest: &signing.Ingestor{Verifier: v, Timestamper: n.tsa, Revocation: localRevocation{n.ocsp},
			Store: prescriptionStore{st: n.st, actor: "api:ingestion", window: time.Duration(n.cfg.Archive.RenewWindow), trust: trust, v: v}, Seal: n.seal, Now: n.cfg.clock()},
		batch: &signing.BatchVerifier{Verifier: v},
	}, nil
}

// reloadTrustAnchors rebuilds the verification services from the trust anchors now in the database.
func (n *node) reloadTrustAnchors(ctx context.Context) error {
	roots, err := loadTrustAnchors(ctx, n.cfg, n.st, n.ca.Issuer().Root())
	if err != nil {
		return err
	}
	vs, err := n.buildVerifiers(roots)
	if err != nil {
		return err
	}
	n.vs.Store(vs)
	return nil
}

// liveIngestor, liveVerifier and liveBatch serve the API with the node's current verification services.
type liveIngestor struct{ n *node }

func (l liveIngestor) Ingest(ctx context.Context, der []byte, caller api.Identity) ([]byte, []byte, error) {
	return ingestor{l.n.vs.Load().ingest}.Ingest(ctx, der, caller)
}

type liveVerifier struct{ n *node }

func (l liveVerifier) Verify(ctx context.Context, der []byte) ([]byte, error) {
	return verifier{l.n.vs.Load().v}.Verify(ctx, der)
}

// VerifySealed implements api.SealingVerifier: the report sealed with the exchange's organisation seal, as at
// ingestion (issue 20: an insurer's evidence per document).
func (l liveVerifier) VerifySealed(ctx context.Context, der []byte) ([]byte, []byte, error) {
	rep := l.n.vs.Load().v.Verify(ctx, der)
	js, err := json.Marshal(rep)
	if err != nil {
		return nil, nil, err
	}
	sealed, err := signing.SealReport(ctx, rep, l.n.seal, l.n.cfg.clock())
	if err != nil {
		return nil, nil, err
	}
	return sealed, js, nil
}

type liveBatch struct{ n *node }

func (l liveBatch) VerifyNDJSON(ctx context.Context, r io.Reader, w io.Writer, opt api.BatchOptions) error {
	return batchVerifier{l.n.vs.Load().batch}.VerifyNDJSON(ctx, r, w, opt)
}

// ---- readiness ----

// readiness implements api.ReadinessChecker: the database answers and takes writes. A write (renewing this
// node's readiness lease) is what tells a read-only database, such as a standby or a primary that lost its
// synchronous standby, from a healthy one. The answer is kept for a second, so probes do not pile up.
type readiness struct {
	st     appStore
	holder string

	mu   sync.Mutex
	at   time.Time
	last error
}

// readyTimeout bounds one readiness check.
const readyTimeout = 2 * time.Second

func (r *readiness) Ready(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.at) < time.Second {
		return r.last
	}
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	_, err := r.st.ClaimLease(ctx, "ready/"+r.holder, r.holder, time.Minute)
	if err != nil {
		err = fmt.Errorf("database not writable: %w", err)
	}
	r.at, r.last = time.Now(), err
	return err
}
