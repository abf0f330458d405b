package api

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/internal/audit"
)

// Dual control (four-eyes principle) for the gravest operations: revoking or re-keying the intermediate,
// destroying a key, replacing the trust anchors. The first operator's request is not executed: it becomes a
// pending approval (202, audited as approval.requested). A different operator approves it with
// POST /v1/approvals/{id}/approve (audited as approval.granted), which executes it (audited as
// approval.executed or approval.failed). The same operator approving is refused (409) and the approval stays
// pending; approvals expire after Config.ApprovalTTL and are single-use. "Different" means a different
// certificate serial and a different subject DN, so an operator with two certificates is still one operator.
//
// Pending approvals live in Services.Approvals (the database), with the operation's parameters, so the second
// operator can approve on any node, after any restart; granting is one conditional update, so only one
// approval of a request succeeds cluster-wide. Without Services.Approvals they live in this process's memory.

// maxPendingApprovals bounds the pending approvals; operators are few and approvals rare.
const maxPendingApprovals = 64

var (
	errApprovalNotFound = &requestError{probNotFound, "no pending approval with that id (it may have expired)"}
	errSameOperator     = &requestError{probConflict, "the approval must come from a different operator"}
	errTooManyPending   = &requestError{probConflict, "too many pending approvals"}
)

// Approval is one dual-control request.
type Approval struct {
	ID          string          `json:"id"`
	Operation   string          `json:"operation"`
	Params      json.RawMessage `json:"params,omitempty"`
	RequestedBy string          `json:"requestedBy"`
	CreatedAt   time.Time       `json:"createdAt"`
	ExpiresAt   time.Time       `json:"expiresAt"`
	Status      string          `json:"status"`
	// Requester and RequesterDN identify the requesting operator (subject, and certificate subject DER), so
	// that the same operator cannot approve.
	Requester   string `json:"-"`
	RequesterDN []byte `json:"-"`
}

type approval = Approval

// ApprovalStore keeps dual-control approvals where every node sees them. Each method that takes an event
// appends it to the audit log in the same transaction. Errors for an approval that is not pending (unknown,
// expired, already granted) wrap ca.ErrNotFound; too many pending, ca.ErrConflict.
type ApprovalStore interface {
	AddApproval(ctx context.Context, ap Approval, max int, ev audit.Event) error
	PendingApproval(ctx context.Context, id string) (Approval, error)
	PendingApprovals(ctx context.Context) ([]Approval, error)
	GrantApproval(ctx context.Context, id, approvedBy string, ev audit.Event) error
	FinishApproval(ctx context.Context, id, status string, ev audit.Event) error
}

// memApprovals is the ApprovalStore of a single process without a database.
type memApprovals struct {
	mu  sync.Mutex
	m   map[string]*Approval
	now func() time.Time
	aud func(context.Context, audit.Event) error
}

func newMemApprovals(now func() time.Time, aud func(context.Context, audit.Event) error) *memApprovals {
	return &memApprovals{m: map[string]*Approval{}, now: now, aud: aud}
}

func (a *memApprovals) expireLocked() {
	now := a.now()
	for id, ap := range a.m {
		if !now.Before(ap.ExpiresAt) {
			delete(a.m, id)
		}
	}
}

func (a *memApprovals) AddApproval(ctx context.Context, ap Approval, max int, ev audit.Event) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.expireLocked()
	if len(a.m) >= max {
		return fmt.Errorf("api: %w", ca.ErrConflict)
	}
	if err := a.aud(ctx, ev); err != nil {
		return err
	}
	a.m[ap.ID] = &ap
	return nil
}

func (a *memApprovals) PendingApproval(_ context.Context, id string) (Approval, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.expireLocked()
	ap, ok := a.m[id]
	if !ok || ap.Status != "pending" {
		return Approval{}, fmt.Errorf("api: approval: %w", ca.ErrNotFound)
	}
	return *ap, nil
}

func (a *memApprovals) PendingApprovals(context.Context) ([]Approval, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.expireLocked()
	out := make([]Approval, 0, len(a.m))
	for _, ap := range a.m {
		if ap.Status == "pending" {
			out = append(out, *ap)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out, nil
}

func (a *memApprovals) GrantApproval(ctx context.Context, id, _ string, ev audit.Event) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.expireLocked()
	ap, ok := a.m[id]
	if !ok || ap.Status != "pending" {
		return fmt.Errorf("api: approval: %w", ca.ErrNotFound)
	}
	if err := a.aud(ctx, ev); err != nil {
		return err
	}
	delete(a.m, id) // single use
	return nil
}

func (a *memApprovals) FinishApproval(ctx context.Context, _, _ string, ev audit.Event) error {
	return a.aud(ctx, ev)
}

func sameOperator(a Approval, b Identity) bool {
	if a.Requester == b.Subject {
		return true
	}
	return len(a.RequesterDN) > 0 && b.Cert != nil && bytes.Equal(a.RequesterDN, b.Cert.RawSubject)
}

func (s *Server) approvalEvent(kind, actor string, ap *Approval, extra map[string]any) audit.Event {
	data := map[string]any{"approvalId": ap.ID, "operation": ap.Operation}
	if len(ap.Params) > 0 {
		data["params"] = ap.Params
	}
	for k, v := range extra {
		data[k] = v
	}
	raw, _ := json.Marshal(data) // strings, times and raw JSON only
	return audit.Event{Time: s.cfg.Now().UTC(), Kind: kind, Actor: actor, Subject: ap.Operation, Data: raw}
}

// requestApproval records a pending approval for op and answers 202. params must hold everything the
// operation needs (execApproval runs it from them, on whichever node the approval arrives).
func (s *Server) requestApproval(w http.ResponseWriter, r *http.Request, op string, params any) {
	id, _ := IdentityFrom(r.Context())
	now := s.cfg.Now().UTC()
	ap := Approval{ID: opaqueID(), Operation: op, RequestedBy: id.Actor(), Requester: id.Subject,
		CreatedAt: now, ExpiresAt: now.Add(s.cfg.ApprovalTTL), Status: "pending"}
	if id.Cert != nil {
		ap.RequesterDN = id.Cert.RawSubject
	}
	if params != nil {
		raw, err := json.Marshal(params)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		ap.Params = raw
	}
	if err := s.approvals.AddApproval(r.Context(), ap, maxPendingApprovals, s.approvalEvent("approval.requested", id.Actor(), &ap, nil)); err != nil {
		if errors.Is(err, ca.ErrConflict) {
			err = errTooManyPending
		}
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Location", "/v1/approvals/"+ap.ID)
	writeJSON(w, http.StatusAccepted, ap)
}

func (s *Server) handleListApprovals(w http.ResponseWriter, r *http.Request) {
	aps, err := s.approvals.PendingApprovals(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if aps == nil {
		aps = []Approval{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"approvals": aps})
}

func (s *Server) handleApprove(w http.ResponseWriter, r *http.Request) {
	approver, _ := IdentityFrom(r.Context())
	ap, err := s.approvals.PendingApproval(r.Context(), chi.URLParam(r, "approvalID"))
	if errors.Is(err, ca.ErrNotFound) {
		err = errApprovalNotFound
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if sameOperator(ap, approver) {
		s.fail(w, r, errSameOperator)
		return
	}
	if err := s.approvals.GrantApproval(r.Context(), ap.ID, approver.Actor(), s.approvalEvent("approval.granted", approver.Actor(), &ap, nil)); err != nil {
		if errors.Is(err, ca.ErrNotFound) {
			err = errApprovalNotFound // granted meanwhile on another node, or expired
		}
		s.fail(w, r, err)
		return
	}
	actors := [2]string{ap.RequestedBy, approver.Actor()}
	result, execErr := s.execApproval(r.Context(), &ap, actors)
	kind, status, extra := "approval.executed", "executed", map[string]any{"approvedBy": approver.Actor()}
	if execErr != nil {
		kind, status = "approval.failed", "failed"
		k, _, _ := classify(execErr)
		extra["problem"] = k.slug // the kind only: the error text may hold internal detail
	}
	// The operation has happened (or failed) whatever the audit log says now: record and report both.
	auditErr := s.approvals.FinishApproval(context.WithoutCancel(r.Context()), ap.ID, status,
		s.approvalEvent(kind, approver.Actor(), &ap, extra))
	if execErr != nil {
		s.fail(w, r, execErr)
		return
	}
	if auditErr != nil {
		s.fail(w, r, auditErr)
		return
	}
	ap.Status = "executed"
	writeJSON(w, http.StatusOK, map[string]any{"approval": ap, "approvedBy": approver.Actor(), "result": result})
}

// Operations under dual control, with their parameters as stored in the approval.
const (
	opRevokeIntermediate = "ca.intermediate.revoke"
	opRekeyIntermediate  = "ca.intermediate.rekey"
	opDestroyKey         = "key.destroy"
	opSetTrustAnchors    = "ca.trust-anchors.set"
	opIssueCert          = "cert.issue"
)

type trustAnchorParams struct {
	SHA256 []string `json:"sha256"`
	Roots  [][]byte `json:"roots"`
}

// execApproval runs an approved operation from its stored parameters. An operation it does not know, or
// parameters that do not decode or check, fail (nothing is executed).
func (s *Server) execApproval(ctx context.Context, ap *Approval, actors [2]string) (any, error) {
	bad := invalid("the approval's stored parameters are not valid for " + ap.Operation)
	switch ap.Operation {
	case opRevokeIntermediate:
		var p struct {
			Reason *int `json:"reason"`
		}
		if json.Unmarshal(ap.Params, &p) != nil || p.Reason == nil || !intermediateReasons[*p.Reason] {
			return nil, bad
		}
		return nil, s.svc.CAAdmin.RevokeIntermediate(ctx, *p.Reason, actors)
	case opRekeyIntermediate:
		csr, err := s.svc.CAAdmin.RekeyIntermediate(ctx, actors)
		if err != nil {
			return nil, err
		}
		return map[string][]byte{"csr": csr}, nil
	case opDestroyKey:
		var p struct {
			KeyID string `json:"keyId"`
		}
		if json.Unmarshal(ap.Params, &p) != nil || !reKeyID.MatchString(p.KeyID) {
			return nil, bad
		}
		return nil, s.svc.CAAdmin.DestroyKey(ctx, p.KeyID, actors)
	case opSetTrustAnchors:
		var p trustAnchorParams
		if json.Unmarshal(ap.Params, &p) != nil || len(p.Roots) == 0 || len(p.Roots) != len(p.SHA256) {
			return nil, bad
		}
		roots := make([]*x509.Certificate, 0, len(p.Roots))
		for i, der := range p.Roots {
			c, err := x509.ParseCertificate(der)
			if err != nil || fingerprint(c) != p.SHA256[i] {
				return nil, bad
			}
			roots = append(roots, c)
		}
		return nil, s.svc.CAAdmin.SetTrustAnchors(ctx, roots, actors)
	case opIssueCert:
		return s.execIssue(ctx, ap.Params, actors)
	}
	return nil, bad
}

// intermediateReasons: RFC 5280 reasons that apply to revoking a CA certificate.
var intermediateReasons = map[int]bool{0: true, 2: true, 4: true, 5: true}

type revokeIntermediateBody struct {
	Reason *int `json:"reason"`
}

func (s *Server) handleRevokeIntermediate(w http.ResponseWriter, r *http.Request) {
	var b revokeIntermediateBody
	if err := decodeJSON(r, &b); err != nil {
		s.fail(w, r, err)
		return
	}
	if b.Reason == nil || !intermediateReasons[*b.Reason] {
		s.fail(w, r, invalid("reason must be one of 0, 2, 4, 5 (RFC 5280 CRLReason)"))
		return
	}
	s.requestApproval(w, r, opRevokeIntermediate, map[string]int{"reason": *b.Reason})
}

func (s *Server) handleRekeyIntermediate(w http.ResponseWriter, r *http.Request) {
	s.requestApproval(w, r, opRekeyIntermediate, nil)
}

func (s *Server) handleDestroyKey(w http.ResponseWriter, r *http.Request) {
	keyID := chi.URLParam(r, "keyID")
	if !reKeyID.MatchString(keyID) {
		s.fail(w, r, malformed("keyID is not a key id"))
		return
	}
	s.requestApproval(w, r, opDestroyKey, map[string]string{"keyId": keyID})
}

type trustAnchorsBody struct {
	Roots [][]byte `json:"roots"` // base64 of each DER root certificate
}

func (s *Server) handleSetTrustAnchors(w http.ResponseWriter, r *http.Request) {
	var b trustAnchorsBody
	if err := decodeJSON(r, &b); err != nil {
		s.fail(w, r, err)
		return
	}
	if len(b.Roots) == 0 || len(b.Roots) > 16 {
		s.fail(w, r, invalid("roots must hold 1 to 16 certificates"))
		return
	}
	fps := make([]string, 0, len(b.Roots))
	for _, der := range b.Roots {
		c, err := x509.ParseCertificate(der)
		if err != nil || !c.IsCA || c.CheckSignatureFrom(c) != nil {
			s.fail(w, r, invalid("each root must be a self-signed CA certificate"))
			return
		}
		fps = append(fps, fingerprint(c))
	}
	s.requestApproval(w, r, opSetTrustAnchors, trustAnchorParams{SHA256: fps, Roots: b.Roots})
}
