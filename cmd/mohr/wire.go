package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx" for tokens/sqlstore
	"golang.org/x/crypto/ocsp"
	_ "modernc.org/sqlite" // database/sql driver "sqlite" for tokens/sqlstore

	"github.com/mohr-hix/mohr/api"
	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/ca/revocation"
	"github.com/mohr-hix/mohr/internal/audit"
	"github.com/mohr-hix/mohr/internal/store"
	"github.com/mohr-hix/mohr/signing"
	"github.com/mohr-hix/mohr/tokens"
	"github.com/mohr-hix/mohr/tokens/sqlstore"
)

// This file adapts the domain packages to each other and to the API's consumer-side interfaces. It holds no
// logic of its own beyond translating types.

// certService implements api.CertService with the CA, the store and the revocation service.
type certService struct {
	ca  *ca.CA
	st  ca.Store
	rev *revocation.Service
	// ocsp, when set, pre-signs the OCSP responses of each certificate issued, in a goroutine of its own, so
	// that pre-signing keeps pace with issuance; the change feed stores them (and signs what this missed).
	ocsp *revocation.Responder
}

func (s certService) Issue(ctx context.Context, r api.IssueRequest) (ca.CertRecord, error) {
	csr, err := ca.ParseCSR(r.CSR)
	if err != nil {
		return ca.CertRecord{}, invalid(err)
	}
	var ticket revocation.Ticket
	if s.ocsp != nil {
		ticket = s.ocsp.Ticket() // before the record is written: a revocation after it wins
	}
	_, rec, err := s.ca.IssueRecord(ctx, ca.Request{
		Profile: r.Profile, CSR: csr, CommonName: r.Subject.CommonName,
		SIAMID: r.Subject.SIAMID, LicenceNumber: r.Subject.LicenceNumber,
		NationalCode: r.Subject.NationalCode, CouncilNumber: r.Subject.CouncilNumber,
		DNSNames: r.Subject.DNSNames, Role: r.Subject.Role, Actor: r.Actor,
	})
	if err != nil {
		if errors.Is(err, ca.ErrBadRequest) || errors.Is(err, ca.ErrWeakKey) || errors.Is(err, ca.ErrNotEligible) ||
			errors.Is(err, ca.ErrLint) || errors.Is(err, ca.ErrKeyReuse) {
			return ca.CertRecord{}, invalid(err)
		}
		return ca.CertRecord{}, err
	}
	if s.ocsp != nil {
		go func() { _ = s.ocsp.Presign(rec, ticket) }() // what it could not sign, the change feed signs
	}
	return rec, nil // as stored: no read back
}

func (s certService) Get(ctx context.Context, serial string) (ca.CertRecord, error) {
	n, err := revocation.NormalizeSerial(serial)
	if err != nil {
		return ca.CertRecord{}, invalid(err)
	}
	return s.st.Certificate(ctx, n)
}

func (s certService) List(ctx context.Context, f ca.CertFilter) ([]ca.CertRecord, error) {
	return s.st.Certificates(ctx, f)
}

func (s certService) Revoke(ctx context.Context, serial string, reason int, actor string) (bool, error) {
	res, err := s.rev.Revoke(ctx, serial, revocation.Reason(reason), actor)
	return res.Changed, revErr(err)
}

func (s certService) Hold(ctx context.Context, serial, actor string) error {
	_, err := s.rev.Hold(ctx, serial, actor)
	return revErr(err)
}

func (s certService) Release(ctx context.Context, serial, actor string) error {
	_, err := s.rev.Release(ctx, serial, actor)
	return revErr(err)
}

// invalidError marks a caller's mistake; the API answers it with 422 (it looks for an Invalid method).
type invalidError struct{ error }

func (e invalidError) Invalid() bool { return true }
func (e invalidError) Unwrap() error { return e.error }

// invalid marks err as the caller's mistake, unless it says a database was unavailable: that stays a 503 with
// Retry-After (a 422 would tell the client not to send the same request again).
func invalid(err error) error {
	var ua interface{ Unavailable() bool }
	if errors.As(err, &ua) && ua.Unavailable() || store.Unavailable(err) {
		return err
	}
	return invalidError{err}
}

func revErr(err error) error {
	if errors.Is(err, revocation.ErrBadReason) || errors.Is(err, revocation.ErrBadSerial) {
		return invalid(err)
	}
	if errors.Is(err, revocation.ErrAlreadyRevoked) || errors.Is(err, revocation.ErrNotIssued) {
		return fmt.Errorf("%w: %v", ca.ErrConflict, err)
	}
	return err
}

// tokenRevoker implements tokens.Revoker with the revocation service.
type tokenRevoker struct{ rev *revocation.Service }

func (t tokenRevoker) Revoke(ctx context.Context, serial string, reason int, actor string) error {
	_, err := t.rev.Revoke(ctx, serial, revocation.Reason(reason), actor)
	return err
}
func (t tokenRevoker) Hold(ctx context.Context, serial, actor string) error {
	_, err := t.rev.Hold(ctx, serial, actor)
	return err
}
func (t tokenRevoker) Release(ctx context.Context, serial, actor string) error {
	_, err := t.rev.Release(ctx, serial, actor)
	return err
}

// adapterIssuer implements tokens.CertIssuer with the CA's facility-adapter profile.
type adapterIssuer struct{ ca *ca.CA }

func (a adapterIssuer) IssueAdapter(ctx context.Context, csr *x509.CertificateRequest, f tokens.Facility) (*x509.Certificate, []*x509.Certificate, error) {
	cert, err := a.ca.Issue(ctx, ca.Request{
		Profile: ca.ProfileFacilityAdapter, CSR: csr, CommonName: f.Name, SIAMID: f.SIAMID,
		LicenceNumber: f.LicenceNumber, SystemCertID: f.SystemID, ValidUntil: f.NotAfterLimit(), Actor: "ra:enrolment",
	})
	if err != nil {
		return nil, nil, err
	}
	chain := a.ca.Issuer().Chain
	return cert, chain[:len(chain)-1], nil
}

// registryRA implements ca.RA with the registries the tokens store keeps: the CA asks it before issuing a
// facility or physician certificate, and caps the lifetime at the standing's end.
type registryRA struct{ st *sqlstore.Store }

func (r registryRA) FacilityStanding(ctx context.Context, siamID, licence string, at time.Time) (time.Time, error) {
	f, err := tokens.CheckFacility(ctx, r.st, siamID, at)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: %v", ca.ErrNotEligible, err)
	}
	if f.LicenceNumber != licence {
		return time.Time{}, fmt.Errorf("%w: licence %s is not the registered licence of %s", ca.ErrNotEligible, licence, siamID)
	}
	return f.NotAfterLimit(), nil
}

func (r registryRA) PhysicianStanding(ctx context.Context, nationalCode, councilNo string, at time.Time) (time.Time, error) {
	p, err := tokens.CheckPhysician(ctx, r.st, nationalCode, councilNo, at)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: %v", ca.ErrNotEligible, err)
	}
	return p.ValidUntil, nil
}

// physicianRegistry implements signing.PhysicianRegistry (lookup by council number).
type physicianRegistry struct{ st *sqlstore.Store }

func (r physicianRegistry) Registration(ctx context.Context, councilNo string) (signing.Registration, error) {
	// The registration and its history (the standing at the signing time, issue 20) in one query.
	p, hist, err := r.st.PhysicianByCouncilWithHistory(ctx, councilNo)
	if errors.Is(err, tokens.ErrNotFound) && p.CouncilNo == "" {
		return signing.Registration{}, signing.ErrUnknownPhysician // SIG_CONSTRAINTS_FAILURE, not TRY_LATER
	}
	if err != nil {
		return signing.Registration{}, err
	}
	reg := signing.Registration{CouncilNumber: p.CouncilNo, NationalCode: p.NationalCode, Name: p.Name,
		Specialty: p.Specialty, Status: string(p.Status), ValidFrom: p.ValidFrom, ValidUntil: p.ValidUntil}
	for _, h := range hist {
		if h.CouncilNo != p.CouncilNo {
			continue // the national code held another council number then: no standing for this one
		}
		reg.History = append(reg.History, signing.Standing{EffectiveAt: h.EffectiveAt, Status: string(h.Status),
			ValidFrom: h.ValidFrom, ValidUntil: h.ValidUntil})
	}
	return reg, nil
}

// localOCSP implements signing.RevocationSource for Mohr's own certificates by asking the in-process responder,
// so ingestion embeds the same response a relying party would fetch.
func localOCSP(r *revocation.Responder) signing.RevocationFunc {
	return func(ctx context.Context, cert, issuer *x509.Certificate) ([]byte, error) {
		req, err := ocsp.CreateRequest(cert, issuer, &ocsp.RequestOptions{Hash: crypto.SHA256})
		if err != nil {
			return nil, err
		}
		return r.Respond(ctx, req)
	}
}

// localRevocation is the ingestion's signing.FreshRevocationSource: the in-process responder signs a response
// for this ingestion, produced at or after the signature timestamp (docs/signing.md "Revocation data at
// ingestion"); OCSP gives what any relying party would fetch.
type localRevocation struct{ r *revocation.Responder }

func (l localRevocation) OCSP(ctx context.Context, cert, issuer *x509.Certificate) ([]byte, error) {
	return localOCSP(l.r)(ctx, cert, issuer)
}

func (l localRevocation) OCSPAfter(ctx context.Context, cert, _ *x509.Certificate, notBefore time.Time) ([]byte, error) {
	return l.r.SignFresh(ctx, cert, notBefore)
}

// prescriptionStore implements signing.PrescriptionStore with the main store.
type prescriptionStore struct {
	st interface {
		SavePrescription(context.Context, store.PrescriptionRecord, audit.Event) error
	}
	actor string
	// window is how long before its TSA certificate expires a prescription's archive timestamp is due.
	window time.Duration
	// trust gives the AlgorithmRules whose end dates also make it due (DefaultAlgorithms when nil).
	trust *signing.TrustPolicy
	// v, when set, parses the timestamp token's certificates through its cache.
	v *signing.Verifier
}

func (p prescriptionStore) SavePrescription(ctx context.Context, rx signing.Prescription) error {
	ind := ""
	if rx.Report != nil {
		ind = string(rx.Report.Indication)
	}
	ev := newEvent("rx.ingested", p.actor, rx.ID, map[string]any{"prescriber": rx.PrescriberNationalCode,
		"council": rx.CouncilNumber, "indication": ind, "signing_time": rx.SigningTime})
	return p.st.SavePrescription(ctx, store.PrescriptionRecord{ID: rx.ID, ReceivedAt: rx.ReceivedAt, SigningTime: rx.SigningTime,
		PrescriberCode: rx.PrescriberNationalCode, CouncilNumber: rx.CouncilNumber, PatientCode: rx.PatientNationalCode,
		Indication: ind, Signature: rx.Signature, SealedReport: rx.SealedReport, Submitter: rx.Submitter,
		ArchiveDue: p.archiveDue(rx)}, ev)
}

// archiveDue is when rx's archive timestamp is due; from the token the ingestion added when it is the only
// timestamp (no second parse of the signature), else from the signature.
func (p prescriptionStore) archiveDue(rx signing.Prescription) time.Time {
	if rx.SignatureTimestamp != nil {
		due := signing.TokenArchiveDue
		if p.v != nil {
			due = p.v.TokenArchiveDue
		}
		if t, err := due(rx.SignatureTimestamp, p.window, p.trust); err == nil {
			return t
		}
	}
	return archiveDue(rx.Signature, p.window, p.trust)
}

// ingestor implements api.PrescriptionIngestor.
type ingestor struct{ in *signing.Ingestor }

func (i ingestor) Ingest(ctx context.Context, der []byte, caller api.Identity) ([]byte, []byte, error) {
	res, err := i.in.IngestAs(ctx, der, api.SubmitterOf(caller))
	if errors.Is(err, signing.ErrRejected) && res != nil && res.Report != nil && res.Report.SubIndication == signing.TryLater {
		// INDETERMINATE/TRY_LATER (ETSI EN 319 102-1 §5.1.3): the same prescription may pass once the registry or
		// a revocation source answers again (a database failing over): 503 with Retry-After, not a refusal.
		return nil, nil, unavailableError{err}
	}
	if errors.Is(err, signing.ErrRejected) && res != nil && res.Report != nil {
		js, jerr := reportJSON(res)
		if jerr != nil {
			return nil, nil, jerr
		}
		return res.SealedReport, js, invalid(err)
	}
	if errors.Is(err, signing.ErrStaleRevocation) || errors.Is(err, signing.ErrTimestamp) {
		return nil, nil, unavailableError{err}
	}
	if err != nil {
		return nil, nil, err
	}
	js, err := reportJSON(res)
	return res.SealedReport, js, err
}

// reportJSON is the ingestion's report as JSON: the bytes the sealed report signs when the ingestor kept them.
func reportJSON(res *signing.IngestResult) ([]byte, error) {
	if res.ReportJSON != nil {
		return res.ReportJSON, nil
	}
	return json.Marshal(res.Report)
}

// unavailableError marks a failure of a dependency the caller may retry; the API answers it with 503.
type unavailableError struct{ error }

func (e unavailableError) Unavailable() bool { return true }
func (e unavailableError) Unwrap() error     { return e.error }

// verifier implements api.Verifier.
type verifier struct{ v *signing.Verifier }

func (v verifier) Verify(ctx context.Context, der []byte) ([]byte, error) {
	return json.Marshal(v.v.Verify(ctx, der))
}

// batchVerifier implements api.BatchVerifier.
type batchVerifier struct{ b *signing.BatchVerifier }

func (b batchVerifier) VerifyNDJSON(ctx context.Context, r io.Reader, w io.Writer, opt api.BatchOptions) error {
	_, err := b.b.VerifyNDJSONWith(ctx, r, w, signing.BatchOptions{FromLine: opt.FromLine})
	return err
}

// tokenAPI implements api.TokenService and api.RegistryService with tokens.Service.
type tokenAPI struct {
	svc *tokens.Service
	st  *sqlstore.Store
	now func() time.Time
	// chain returns the issuing CA's chain (intermediates, then the root) for enrolment answers.
	chain func() []*x509.Certificate
}

func (t tokenAPI) CreateEnrolmentCode(ctx context.Context, siamID, actor string) (string, time.Time, error) {
	return t.svc.NewEnrolmentCode(ctx, siamID, actor)
}

func (t tokenAPI) Enrol(ctx context.Context, code string, csrDER []byte, kind string) (api.Token, error) {
	csr, err := ca.ParseCSR(csrDER)
	if err != nil {
		return api.Token{}, invalid(err)
	}
	k := tokens.KindSoftware
	if kind == "physical" { // the API's name for a key generated on the facility's PKCS#11 device
		k = tokens.KindPhysical
	}
	iss, err := t.svc.Enrol(ctx, tokens.EnrolRequest{Code: code, CSR: csr, Kind: k, Actor: "enrolment"})
	if err != nil {
		if errors.Is(err, tokens.ErrBadCSR) || errors.Is(err, tokens.ErrInvalidInput) {
			return api.Token{}, invalid(err)
		}
		// api gives each refusal its own problem type (it knows the tokens sentinels); deniedError keeps any
		// it does not know a 403.
		if errors.Is(err, tokens.ErrCodeUsed) || errors.Is(err, tokens.ErrCodeExpired) || errors.Is(err, tokens.ErrWrongSIAM) ||
			errors.Is(err, tokens.ErrNotEligible) || errors.Is(err, tokens.ErrCodeUnknown) {
			return api.Token{}, deniedError{err}
		}
		return api.Token{}, err
	}
	return t.withChain(toAPIToken(iss.Token, iss.Cert.Raw), iss.Cert), nil
}

// RenewToken renews the caller's adapter token (api.TokenRenewer): current is the client certificate the API
// verified, and it must be an active token. The answer is the new chain up to and including the root.
func (t tokenAPI) RenewToken(ctx context.Context, current *x509.Certificate, csrDER []byte) ([]*x509.Certificate, error) {
	csr, err := ca.ParseCSR(csrDER)
	if err != nil {
		return nil, invalid(err)
	}
	iss, err := t.svc.Renew(ctx, current, csr, "renewal:"+fmt.Sprintf("%x", current.SerialNumber))
	switch {
	case err == nil:
	case errors.Is(err, tokens.ErrBadCSR), errors.Is(err, tokens.ErrInvalidInput):
		return nil, invalid(err)
	case errors.Is(err, tokens.ErrNotFound), errors.Is(err, tokens.ErrConflict):
		// Not a recorded token, or one already superseded or revoked: only the newest active token renews.
		return nil, deniedError{err}
	default:
		return nil, err
	}
	out := append([]*x509.Certificate{iss.Cert}, iss.Chain...)
	if t.chain != nil {
		if up := t.chain(); len(up) > 0 {
			out = append([]*x509.Certificate{iss.Cert}, up...)
		}
	}
	return out, nil
}

// withChain adds the whole chain (intermediates and root) to an issued token's answer.
func (t tokenAPI) withChain(tok api.Token, leaf *x509.Certificate) api.Token {
	if t.chain == nil {
		return tok
	}
	up := t.chain()
	all := append([]*x509.Certificate{leaf}, up...)
	for _, c := range up {
		tok.Chain = append(tok.Chain, c.Raw)
	}
	tok.ChainPEM = string(encodeChain(all...))
	return tok
}

func (t tokenAPI) Tokens(ctx context.Context, siamID string) ([]api.Token, error) {
	ts, err := t.svc.Tokens(ctx, siamID)
	if err != nil {
		return nil, err
	}
	out := make([]api.Token, 0, len(ts))
	for _, tok := range ts {
		out = append(out, toAPIToken(tok, nil))
	}
	return out, nil
}

func (t tokenAPI) RevokeToken(ctx context.Context, siamID, tokenID string, reason int, actor string) error {
	tok, err := t.st.Token(ctx, tokenID)
	if err != nil {
		return err
	}
	if tok.SIAMID != siamID {
		return fmt.Errorf("%w: token %s", ca.ErrNotFound, tokenID) // another facility's token does not exist for you
	}
	return t.svc.Revoke(ctx, tokenID, reason, actor)
}

func toAPIToken(t tokens.Token, der []byte) api.Token {
	return api.Token{ID: t.Serial, SIAMID: t.SIAMID, Kind: apiKind(t.Kind), Serial: t.Serial, Status: string(t.Status), NotAfter: t.NotAfter, CertDER: der}
}

// deniedError marks a refusal the API answers with 403.
type deniedError struct{ error }

func (e deniedError) Denied() bool  { return true }
func (e deniedError) Unwrap() error { return e.error }

func (t tokenAPI) ImportFacilities(ctx context.Context, recs []api.FacilityRecord, actor string) (api.ImportResult, error) {
	fs := make([]tokens.Facility, 0, len(recs))
	for _, r := range recs {
		fs = append(fs, tokens.Facility{SIAMID: r.SIAMID, Name: r.Name, LicenceNumber: r.LicenceNumber,
			LicenceStatus: tokens.Status(r.LicenceStatus), LicenceUntil: r.LicenceNotAfter, LicenceFrom: time.Unix(0, 0).UTC(),
			SystemID: r.SystemCertID, SystemStatus: tokens.StatusActive, SystemUntil: r.SystemCertNotAfter})
	}
	if err := t.svc.ImportFacilities(ctx, fs, actor); err != nil {
		return api.ImportResult{}, invalid(err)
	}
	return api.ImportResult{Added: len(fs)}, nil
}

func (t tokenAPI) ImportPhysicians(ctx context.Context, recs []api.PhysicianRecord, actor string) (api.ImportResult, error) {
	ps := make([]tokens.Physician, 0, len(recs))
	for _, r := range recs {
		ps = append(ps, tokens.Physician{NationalCode: r.NationalCode, CouncilNo: r.CouncilNumber, Name: r.Name,
			Specialty: r.Specialty, Status: tokens.Status(r.Status), ValidFrom: time.Unix(0, 0).UTC(), ValidUntil: r.RegisteredUntil,
			StatusSince: r.StatusSince})
	}
	if err := t.svc.ImportPhysicians(ctx, ps, actor); err != nil {
		return api.ImportResult{}, invalid(err)
	}
	return api.ImportResult{Added: len(ps)}, nil
}

func (t tokenAPI) FacilityStanding(ctx context.Context, siamID string) (api.Standing, error) {
	now := t.now()
	_, err := tokens.CheckFacility(ctx, t.st, siamID, now)
	return standing(siamID, err, now)
}

func (t tokenAPI) PhysicianStanding(ctx context.Context, councilNo string) (api.Standing, error) {
	now := t.now()
	p, err := t.st.PhysicianByCouncil(ctx, councilNo)
	if err == nil {
		_, err = tokens.CheckPhysician(ctx, t.st, p.NationalCode, councilNo, now)
	}
	return standing(councilNo, err, now)
}

// PhysicianHistory implements api.RegistryService: today's registration and every standing change (issue 20).
func (t tokenAPI) PhysicianHistory(ctx context.Context, councilNo string) (api.RegistrationHistory, error) {
	p, err := t.st.PhysicianByCouncil(ctx, councilNo)
	if errors.Is(err, tokens.ErrNotFound) {
		return api.RegistrationHistory{}, fmt.Errorf("%w: council number %s", ca.ErrNotFound, councilNo)
	}
	if err != nil {
		return api.RegistrationHistory{}, err
	}
	hist, err := t.st.PhysicianHistory(ctx, p.NationalCode)
	if err != nil {
		return api.RegistrationHistory{}, err
	}
	h := api.RegistrationHistory{CouncilNumber: p.CouncilNo, NationalCode: p.NationalCode, Name: p.Name, Specialty: p.Specialty,
		Status: string(p.Status), ValidFrom: p.ValidFrom, ValidUntil: p.ValidUntil, CheckedAt: t.now().UTC(), History: []api.StandingEntry{}}
	for _, c := range hist {
		if c.CouncilNo != p.CouncilNo {
			continue
		}
		h.History = append(h.History, api.StandingEntry{EffectiveAt: c.EffectiveAt, Status: string(c.Status),
			ValidFrom: c.ValidFrom, ValidUntil: c.ValidUntil, RecordedAt: c.RecordedAt})
	}
	return h, nil
}

func standing(id string, err error, now time.Time) (api.Standing, error) {
	s := api.Standing{ID: id, Status: "good", CheckedAt: now}
	switch {
	case err == nil:
	case errors.Is(err, tokens.ErrNotFound):
		s.Status, s.Reasons = "unknown", []string{"not in the registry"}
	case errors.Is(err, tokens.ErrNotEligible):
		s.Status, s.Reasons = "lapsed", []string{strings.TrimPrefix(err.Error(), "tokens: ")}
	default:
		return api.Standing{}, err
	}
	return s, nil
}

// auditAPI implements api.AuditService over the store.
type auditAPI struct {
	st    appStore
	vkeys []string
}

func (a auditAPI) Verify(ctx context.Context) (api.AuditVerification, error) {
	res, err := audit.VerifyKeys(ctx, a.st, a.vkeys)
	var bad *audit.BadEntryError
	if errors.As(err, &bad) {
		return api.AuditVerification{OK: false, FirstBad: bad.Seq}, nil
	}
	if err != nil {
		return api.AuditVerification{}, err
	}
	return api.AuditVerification{OK: true, Size: res.Size, RootHash: res.Root[:], FirstBad: -1}, nil
}

func (a auditAPI) LatestCheckpoint(ctx context.Context) ([]byte, error) {
	cps, err := a.st.AuditCheckpoints(ctx)
	if err != nil {
		return nil, err
	}
	if len(cps) == 0 {
		return nil, fmt.Errorf("%w: no checkpoint yet", ca.ErrNotFound)
	}
	return cps[len(cps)-1], nil
}

func (a auditAPI) ProveInclusion(ctx context.Context, index, treeSize int64) ([][]byte, error) {
	p, err := audit.Prove(ctx, a.st, index, treeSize)
	if err != nil {
		return nil, invalid(err)
	}
	return hashesOut(p), nil
}

func (a auditAPI) ProveConsistency(ctx context.Context, oldSize, newSize int64) ([][]byte, error) {
	p, err := audit.ProveConsistency(ctx, a.st, oldSize, newSize)
	if err != nil {
		return nil, invalid(err)
	}
	return hashesOut(p), nil
}

func hashesOut[T ~[]H, H ~[32]byte](p T) [][]byte {
	out := make([][]byte, len(p))
	for i := range p {
		h := p[i]
		out[i] = h[:]
	}
	return out
}

// clientRevocationBound is how far behind the change feed (a poll every 2 s) may be before the API stops
// answering client-certificate revocation from memory (api.ClientRevocationCache) and reads the database on
// every request: a client revoked on any node is refused at most this long after the revocation committed.
const clientRevocationBound = 10 * time.Second

// clientRevocation implements api.RevocationChecker from the store: a client certificate is admitted only
// if the CA recorded it as issued. Unknown serials are refused (fail closed). The server reads it through
// api.ClientRevocationCache.
type clientRevocation struct{ st ca.Store }

func (c clientRevocation) Revoked(ctx context.Context, cert *x509.Certificate) (bool, error) {
	rec, err := c.st.Certificate(ctx, ca.SerialHex(cert.SerialNumber))
	if errors.Is(err, ca.ErrNotFound) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return rec.Status != ca.StatusIssued, nil
}

// openTokenStore opens tokens/sqlstore on the configured database (its own tables, prefixed tokens_). Its
// audit events go into st's audit log in the same transaction as the change they record (exactly once, on
// every node); the outbox table only holds events written by older versions, drained at start.
func openTokenStore(ctx context.Context, cfg *Config, st appStore) (*sqlstore.Store, *sql.DB, error) {
	driver, dsn, dialect := "sqlite", cfg.Database.DSN, "sqlite"
	if cfg.Database.Driver == "postgres" {
		driver, dialect = "pgx", "postgres"
	} else {
		dsn = "file:" + dsn + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate"
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return nil, nil, err
	}
	if driver == "sqlite" {
		db.SetMaxOpenConns(1) // one writer; SQLite serialises writers anyway
	}
	ts, err := sqlstore.New(ctx, db, sqlstore.Options{Dialect: dialect, AppendAudit: st.AppendAuditTx, Now: cfg.clock(), Unavailable: store.Unavailable})
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return ts, db, nil
}

// afterCommand holds work a CLI command leaves for the end of the process (draining the token outbox into the
// audit log, closing databases). main runs it after the command, whatever its result.
var afterCommand []func(context.Context)

func init() {
	openTokenService = func(ctx context.Context) (*tokens.Service, error) {
		cfg, err := loadConfig()
		if err != nil {
			return nil, err
		}
		st, err := openStore(ctx, cfg)
		if err != nil {
			return nil, err
		}
		ts, db, err := openTokenStore(ctx, cfg, st)
		if err != nil {
			st.Close()
			return nil, err
		}
		afterCommand = append(afterCommand, func(ctx context.Context) {
			ts.DrainAuditOutbox(context.WithoutCancel(ctx), st.AppendAuditTx)
			db.Close()
			st.Close()
		})
		svc := &tokens.Service{Store: ts}
		// Issuance needs the CA; commands that only touch registries work without one.
		if is, err := loadIssuer(ctx, cfg); err == nil {
			c, err := openCA(ctx, st, is, cfg.CA.Issuance, ca.Options{RA: registryRA{ts}}, cliActor()) // cakeys.go
			if err != nil {
				return nil, err
			}
			svc.Issuer = adapterIssuer{c}
		}
		svc.Revoker = tokenRevoker{&revocation.Service{Store: st}}
		return svc, nil
	}
}

// apiKind names a token kind as the API does ("physical" or "software").
func apiKind(k tokens.TokenKind) string {
	if k == tokens.KindPhysical {
		return "physical"
	}
	return string(k)
}
