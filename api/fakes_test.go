package api

import (
	"bufio"
	"context"
	"crypto/x509"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/internal/audit"
)

// recorder counts calls into the fake services, so tests can assert that a refused request reached none.
type recorder struct {
	mu     sync.Mutex
	calls  map[string]int
	events []audit.Event
	err    error // returned by every service method when set
	panics bool
	issued []IssueRequest // what Certs.Issue was asked for
}

func newRecorder() *recorder { return &recorder{calls: map[string]int{}} }

func (r *recorder) rec(name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls[name]++
	if r.panics {
		panic("fake service panicked with secret detail")
	}
	return r.err
}

func (r *recorder) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.calls {
		n += c
	}
	return n
}

func (r *recorder) count(name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[name]
}

func (r *recorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = map[string]int{}
	r.events = nil
	r.issued = nil
	r.err = nil
	r.panics = false
}

func (r *recorder) setErr(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.err = err
}

func (r *recorder) kinds() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		out = append(out, e.Kind)
	}
	return out
}

type fakeCerts struct{ r *recorder }

func fakeRecord(serial string) ca.CertRecord {
	return ca.CertRecord{Serial: serial, Profile: "facility-adapter", Subject: "CN=x", Status: ca.StatusIssued,
		NotBefore: testNow, NotAfter: testNow.Add(time.Hour)}
}

func (f fakeCerts) Issue(_ context.Context, req IssueRequest) (ca.CertRecord, error) {
	f.r.mu.Lock()
	f.r.issued = append(f.r.issued, req)
	f.r.mu.Unlock()
	return fakeRecord("abc"), f.r.rec("Certs.Issue")
}
func (f fakeCerts) Get(_ context.Context, serial string) (ca.CertRecord, error) {
	return fakeRecord(serial), f.r.rec("Certs.Get")
}
func (f fakeCerts) List(context.Context, ca.CertFilter) ([]ca.CertRecord, error) {
	return []ca.CertRecord{fakeRecord("abc")}, f.r.rec("Certs.List")
}
func (f fakeCerts) Revoke(context.Context, string, int, string) (bool, error) {
	return true, f.r.rec("Certs.Revoke")
}
func (f fakeCerts) Hold(context.Context, string, string) error    { return f.r.rec("Certs.Hold") }
func (f fakeCerts) Release(context.Context, string, string) error { return f.r.rec("Certs.Release") }

type fakeCRL struct{ r *recorder }

func (f fakeCRL) CRL(shard int) ([]byte, time.Time, time.Time, bool) {
	_ = f.r.rec("CRL")
	if shard > 3 {
		return nil, time.Time{}, time.Time{}, false
	}
	return []byte("crl-der"), testNow.Add(-time.Hour), testNow.Add(6 * time.Hour), true
}

type fakeTrustBundle struct{ r *recorder }

func (f fakeTrustBundle) Bundle(context.Context) ([]byte, time.Time, time.Time, error) {
	if err := f.r.rec("TrustBundle"); err != nil {
		return nil, time.Time{}, time.Time{}, err
	}
	return []byte("cose-sign1"), testNow.Add(-time.Hour), testNow.Add(7 * 24 * time.Hour), nil
}

type fakeFeed struct{ r *recorder }

func (f fakeFeed) RevocationChanges(_ context.Context, from int64, profile string) (RevocationChanges, error) {
	if err := f.r.rec("RevocationChanges"); err != nil {
		return RevocationChanges{}, err
	}
	if from < 0 {
		return RevocationChanges{Next: 7}, nil
	}
	return RevocationChanges{Next: 7, Changes: []RevocationChange{{Seq: 6, Serial: "0a", Status: "revoked", Reason: 1, NotAfter: testNow}}}, nil
}

type fakeOCSP struct{ r *recorder }

func (f fakeOCSP) Respond(context.Context, []byte) ([]byte, error) {
	return []byte("ocsp-resp"), f.r.rec("OCSP.Respond")
}
func (f fakeOCSP) RespondGET(context.Context, string) ([]byte, error) {
	return []byte("ocsp-resp"), f.r.rec("OCSP.RespondGET")
}

type fakeTSA struct{ r *recorder }

func (f fakeTSA) Respond(context.Context, []byte) ([]byte, error) {
	return []byte("ts-reply"), f.r.rec("TSA.Respond")
}

type fakeIngest struct{ r *recorder }

func (f fakeIngest) Ingest(context.Context, []byte, Identity) ([]byte, []byte, error) {
	return []byte("sealed"), []byte(`{"indication":"TOTAL_PASSED"}`), f.r.rec("Ingest")
}

type fakeVerifier struct{ r *recorder }

func (f fakeVerifier) Verify(context.Context, []byte) ([]byte, error) {
	return []byte(`{"indication":"TOTAL_PASSED"}`), f.r.rec("Verify")
}

func (f fakeVerifier) VerifySealed(context.Context, []byte) ([]byte, []byte, error) {
	return []byte("sealed-report"), []byte(`{"indication":"TOTAL_PASSED"}`), f.r.rec("VerifySealed")
}

type fakeBatch struct{ r *recorder }

func (f fakeBatch) VerifyNDJSON(ctx context.Context, in io.Reader, out io.Writer, _ BatchOptions) error {
	if err := f.r.rec("Batch"); err != nil {
		return err
	}
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		if _, err := io.WriteString(out, `{"indication":"TOTAL_PASSED"}`+"\n"); err != nil {
			return err
		}
	}
	return sc.Err()
}

type fakeUpgrader struct{ r *recorder }

func (f fakeUpgrader) Upgrade(context.Context, []byte, string) ([]byte, error) {
	return []byte("cms-blt"), f.r.rec("Upgrade")
}

// fakePrescriptions holds one prescription, submitted by the test facility and written by the test physician.
type fakePrescriptions struct{ r *recorder }

func (f fakePrescriptions) Prescription(_ context.Context, id string) (StoredPrescription, error) {
	return StoredPrescription{ID: id, Indication: "TOTAL_PASSED", PrescriberCouncilNumber: testCouncil,
		Signature: []byte("cms-blta"), SealedReport: []byte("sealed"), Submitter: "facility:" + testSIAM}, f.r.rec("Prescription")
}

type fakeTokens struct{ r *recorder }

func (f fakeTokens) CreateEnrolmentCode(context.Context, string, string) (string, time.Time, error) {
	return "code-12345678", testNow.Add(time.Hour), f.r.rec("Tokens.CreateEnrolmentCode")
}
func (f fakeTokens) Enrol(_ context.Context, _ string, _ []byte, kind string) (Token, error) {
	return Token{ID: "tok1", SIAMID: "SIAM-1001", Kind: kind, Status: "active"}, f.r.rec("Tokens.Enrol")
}
func (f fakeTokens) Tokens(_ context.Context, siam string) ([]Token, error) {
	return []Token{{ID: "tok1", SIAMID: siam, Kind: "software", Status: "active"}}, f.r.rec("Tokens.Tokens")
}
func (f fakeTokens) RevokeToken(context.Context, string, string, int, string) error {
	return f.r.rec("Tokens.RevokeToken")
}

func (f fakeTokens) RenewToken(_ context.Context, cur *x509.Certificate, _ []byte) ([]*x509.Certificate, error) {
	return []*x509.Certificate{cur}, f.r.rec("Tokens.RenewToken")
}

type fakeRegistry struct{ r *recorder }

func (f fakeRegistry) ImportFacilities(_ context.Context, recs []FacilityRecord, _ string) (ImportResult, error) {
	return ImportResult{Added: len(recs)}, f.r.rec("Registry.ImportFacilities")
}
func (f fakeRegistry) ImportPhysicians(_ context.Context, recs []PhysicianRecord, _ string) (ImportResult, error) {
	return ImportResult{Added: len(recs)}, f.r.rec("Registry.ImportPhysicians")
}
func (f fakeRegistry) FacilityStanding(_ context.Context, id string) (Standing, error) {
	return Standing{ID: id, Status: "good", CheckedAt: testNow}, f.r.rec("Registry.FacilityStanding")
}
func (f fakeRegistry) PhysicianHistory(_ context.Context, id string) (RegistrationHistory, error) {
	return RegistrationHistory{CouncilNumber: id, Status: "active", CheckedAt: testNow}, f.r.rec("Registry.PhysicianHistory")
}

func (f fakeRegistry) PhysicianStanding(_ context.Context, id string) (Standing, error) {
	return Standing{ID: id, Status: "good", CheckedAt: testNow}, f.r.rec("Registry.PhysicianStanding")
}

type fakeAudit struct{ r *recorder }

func (f fakeAudit) Verify(context.Context) (AuditVerification, error) {
	return AuditVerification{OK: true, Size: 3, FirstBad: -1}, f.r.rec("Audit.Verify")
}
func (f fakeAudit) LatestCheckpoint(context.Context) ([]byte, error) {
	return []byte("mohr\n3\nAAAA\n"), f.r.rec("Audit.LatestCheckpoint")
}
func (f fakeAudit) ProveInclusion(context.Context, int64, int64) ([][]byte, error) {
	return [][]byte{{1, 2}}, f.r.rec("Audit.ProveInclusion")
}
func (f fakeAudit) ProveConsistency(context.Context, int64, int64) ([][]byte, error) {
	return [][]byte{{3, 4}}, f.r.rec("Audit.ProveConsistency")
}

type fakeCAAdmin struct {
	r      *recorder
	mu     sync.Mutex
	actors [][2]string
}

func (f *fakeCAAdmin) note(a [2]string) {
	f.mu.Lock()
	f.actors = append(f.actors, a)
	f.mu.Unlock()
}
func (f *fakeCAAdmin) RevokeIntermediate(_ context.Context, _ int, a [2]string) error {
	f.note(a)
	return f.r.rec("CAAdmin.RevokeIntermediate")
}
func (f *fakeCAAdmin) RekeyIntermediate(_ context.Context, a [2]string) ([]byte, error) {
	f.note(a)
	return []byte("csr"), f.r.rec("CAAdmin.RekeyIntermediate")
}
func (f *fakeCAAdmin) DestroyKey(_ context.Context, _ string, a [2]string) error {
	f.note(a)
	return f.r.rec("CAAdmin.DestroyKey")
}
func (f *fakeCAAdmin) SetTrustAnchors(_ context.Context, _ []*x509.Certificate, a [2]string) error {
	f.note(a)
	return f.r.rec("CAAdmin.SetTrustAnchors")
}

// fakeAuditor records events; it is not counted as a service call.
type fakeAuditor struct {
	r    *recorder
	fail bool
}

func (f *fakeAuditor) AppendAudit(_ context.Context, ev audit.Event) error {
	if f.fail {
		return errors.New("audit store down: SQL detail")
	}
	f.r.mu.Lock()
	f.r.events = append(f.r.events, ev)
	f.r.mu.Unlock()
	return nil
}

// fakeRevocation says revoked for the serials in set; err makes it fail.
type fakeRevocation struct {
	mu      sync.Mutex
	revoked map[string]bool
	err     error
	calls   int
}

func (f *fakeRevocation) Revoked(_ context.Context, c *x509.Certificate) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return false, f.err
	}
	return f.revoked[c.SerialNumber.String()], nil
}

func fakeServices(r *recorder) (Services, *fakeRevocation, *fakeCAAdmin, *fakeAuditor) {
	rev := &fakeRevocation{revoked: map[string]bool{}}
	adm := &fakeCAAdmin{r: r}
	aud := &fakeAuditor{r: r}
	return Services{
		Certs: fakeCerts{r}, CRL: fakeCRL{r}, OCSP: fakeOCSP{r}, TSA: fakeTSA{r}, Ingestor: fakeIngest{r},
		Verifier: fakeVerifier{r}, Batch: fakeBatch{r}, Upgrader: fakeUpgrader{r}, Prescriptions: fakePrescriptions{r}, Tokens: fakeTokens{r}, Renewal: fakeTokens{r},
		Registry: fakeRegistry{r}, Audit: fakeAudit{r}, CAAdmin: adm, Auditor: aud, Revocation: rev,
		Offline: fakeTrustBundle{r}, Revocations: fakeFeed{r}, Remote: fakeRemote{r},
	}, rev, adm, aud
}
