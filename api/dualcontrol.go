package api

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
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
// Pending approvals live in this process's memory: a restart drops them (they must be requested again), and
// with several API instances the approval must reach the instance that holds it. That suits the embedded
// deployment; a shared store is future work.

// maxPendingApprovals bounds memory; operators are few and approvals rare.
const maxPendingApprovals = 64

var (
	errApprovalNotFound = &requestError{probNotFound, "no pending approval with that id (it may have expired)"}
	errSameOperator     = &requestError{probConflict, "the approval must come from a different operator"}
	errTooManyPending   = &requestError{probConflict, "too many pending approvals"}
)

type approval struct {
	ID          string          `json:"id"`
	Operation   string          `json:"operation"`
	Params      json.RawMessage `json:"params,omitempty"`
	RequestedBy string          `json:"requestedBy"`
	CreatedAt   time.Time       `json:"createdAt"`
	ExpiresAt   time.Time       `json:"expiresAt"`
	Status      string          `json:"status"`

	requester Identity
	exec      func(ctx context.Context, actors [2]string) (any, error)
}

type approvals struct {
	mu  sync.Mutex
	m   map[string]*approval
	ttl time.Duration
	now func() time.Time
}

func newApprovals(ttl time.Duration, now func() time.Time) *approvals {
	return &approvals{m: map[string]*approval{}, ttl: ttl, now: now}
}

// expireLocked drops expired approvals. Callers hold mu.
func (a *approvals) expireLocked(now time.Time) {
	for id, ap := range a.m {
		if !now.Before(ap.ExpiresAt) {
			delete(a.m, id)
		}
	}
}

func (a *approvals) add(ap *approval) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	a.expireLocked(now)
	if len(a.m) >= maxPendingApprovals {
		return errTooManyPending
	}
	ap.ID, ap.CreatedAt, ap.ExpiresAt, ap.Status = opaqueID(), now.UTC(), now.Add(a.ttl).UTC(), "pending"
	a.m[ap.ID] = ap
	return nil
}

// take removes and returns the approval id for approver, unless it is unknown, expired or the approver is its
// requester.
func (a *approvals) take(id string, approver Identity) (*approval, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.expireLocked(a.now())
	ap, ok := a.m[id]
	if !ok {
		return nil, errApprovalNotFound
	}
	if sameOperator(ap.requester, approver) {
		return nil, errSameOperator
	}
	delete(a.m, id)
	return ap, nil
}

// putBack returns an approval taken by take (when its audit event could not be written).
func (a *approvals) putBack(ap *approval) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.m[ap.ID] = ap
}

func (a *approvals) remove(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.m, id)
}

func (a *approvals) list() []approval {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.expireLocked(a.now())
	out := make([]approval, 0, len(a.m))
	for _, ap := range a.m {
		out = append(out, *ap)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out
}

func sameOperator(a, b Identity) bool {
	if a.Subject == b.Subject {
		return true
	}
	return a.Cert != nil && b.Cert != nil && bytes.Equal(a.Cert.RawSubject, b.Cert.RawSubject)
}

func (s *Server) auditEvent(ctx context.Context, kind, actor string, ap *approval, extra map[string]any) error {
	data := map[string]any{"approvalId": ap.ID, "operation": ap.Operation}
	if len(ap.Params) > 0 {
		data["params"] = ap.Params
	}
	for k, v := range extra {
		data[k] = v
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return err
	}
	return s.svc.Auditor.AppendAudit(ctx, audit.Event{Time: s.cfg.Now().UTC(), Kind: kind, Actor: actor, Subject: ap.Operation, Data: raw})
}

// requestApproval records a pending approval for op and answers 202.
func (s *Server) requestApproval(w http.ResponseWriter, r *http.Request, op string, params any,
	exec func(ctx context.Context, actors [2]string) (any, error)) {
	id, _ := IdentityFrom(r.Context())
	ap := &approval{Operation: op, RequestedBy: id.Actor(), requester: id, exec: exec}
	if params != nil {
		raw, err := json.Marshal(params)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		ap.Params = raw
	}
	if err := s.approvals.add(ap); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.auditEvent(r.Context(), "approval.requested", id.Actor(), ap, nil); err != nil {
		s.approvals.remove(ap.ID)
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Location", "/v1/approvals/"+ap.ID)
	writeJSON(w, http.StatusAccepted, ap)
}

func (s *Server) handleListApprovals(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"approvals": s.approvals.list()})
}

func (s *Server) handleApprove(w http.ResponseWriter, r *http.Request) {
	approver, _ := IdentityFrom(r.Context())
	ap, err := s.approvals.take(chi.URLParam(r, "approvalID"), approver)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.auditEvent(r.Context(), "approval.granted", approver.Actor(), ap, nil); err != nil {
		s.approvals.putBack(ap)
		s.fail(w, r, err)
		return
	}
	actors := [2]string{ap.RequestedBy, approver.Actor()}
	result, execErr := ap.exec(r.Context(), actors)
	kind, extra := "approval.executed", map[string]any{"approvedBy": approver.Actor()}
	if execErr != nil {
		kind = "approval.failed"
		k, _, _ := classify(execErr)
		extra["problem"] = k.slug // the kind only: the error text may hold internal detail
	}
	// The operation has happened (or failed) whatever the audit log says now: record and report both.
	auditErr := s.auditEvent(context.WithoutCancel(r.Context()), kind, approver.Actor(), ap, extra)
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
	reason := *b.Reason
	s.requestApproval(w, r, "ca.intermediate.revoke", map[string]int{"reason": reason},
		func(ctx context.Context, actors [2]string) (any, error) {
			return nil, s.svc.CAAdmin.RevokeIntermediate(ctx, reason, actors)
		})
}

func (s *Server) handleRekeyIntermediate(w http.ResponseWriter, r *http.Request) {
	s.requestApproval(w, r, "ca.intermediate.rekey", nil, func(ctx context.Context, actors [2]string) (any, error) {
		csr, err := s.svc.CAAdmin.RekeyIntermediate(ctx, actors)
		if err != nil {
			return nil, err
		}
		return map[string][]byte{"csr": csr}, nil
	})
}

func (s *Server) handleDestroyKey(w http.ResponseWriter, r *http.Request) {
	keyID := chi.URLParam(r, "keyID")
	if !reKeyID.MatchString(keyID) {
		s.fail(w, r, malformed("keyID is not a key id"))
		return
	}
	s.requestApproval(w, r, "key.destroy", map[string]string{"keyId": keyID},
		func(ctx context.Context, actors [2]string) (any, error) {
			return nil, s.svc.CAAdmin.DestroyKey(ctx, keyID, actors)
		})
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
	roots := make([]*x509.Certificate, 0, len(b.Roots))
	fps := make([]string, 0, len(b.Roots))
	for _, der := range b.Roots {
		c, err := x509.ParseCertificate(der)
		if err != nil || !c.IsCA || c.CheckSignatureFrom(c) != nil {
			s.fail(w, r, invalid("each root must be a self-signed CA certificate"))
			return
		}
		roots = append(roots, c)
		fps = append(fps, fingerprint(c))
	}
	s.requestApproval(w, r, "ca.trust-anchors.set", map[string][]string{"sha256": fps},
		func(ctx context.Context, actors [2]string) (any, error) {
			return nil, s.svc.CAAdmin.SetTrustAnchors(ctx, roots, actors)
		})
}
