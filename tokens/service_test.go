package tokens_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/internal/audit"
	"github.com/mohr-hix/mohr/internal/hixext"
	"github.com/mohr-hix/mohr/tokens"
	"github.com/mohr-hix/mohr/tokens/tokentest"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type fixture struct {
	clock *tokentest.Clock
	ca    *tokentest.CA
	store *tokens.MemStore
	svc   *tokens.Service
}

func newFixture(t *testing.T, facilities ...tokens.Facility) *fixture {
	t.Helper()
	clk := tokentest.NewClock(t0)
	ca, err := tokentest.New("Test", t0)
	if err != nil {
		t.Fatal(err)
	}
	ca.Clock = clk.Now
	st := tokens.NewMemStore()
	svc := &tokens.Service{Store: st, Issuer: ca, Revoker: ca, Clock: clk.Now, CodeTTL: time.Hour}
	if len(facilities) == 0 {
		facilities = []tokens.Facility{tokentest.Facility("SIAM-1001", t0), tokentest.Facility("SIAM-2002", t0)}
	}
	if err := svc.ImportFacilities(context.Background(), facilities, "test"); err != nil {
		t.Fatal(err)
	}
	return &fixture{clk, ca, st, svc}
}

func csrFor(t *testing.T, siam string) *x509.CertificateRequest {
	t.Helper()
	k, err := tokens.NewSoftwareKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := tokens.NewCSR(rand.Reader, k, siam, "adapter")
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

// snapshot captures everything a MemStore holds, to assert a failed operation changed nothing.
type snapshot struct {
	facilities []tokens.Facility
	tokens     []tokens.Token
	codes      []tokens.EnrolmentCode
	events     int
}

func snap(t *testing.T, st *tokens.MemStore, codeIDs ...string) snapshot {
	t.Helper()
	ctx := context.Background()
	fs, _ := st.Facilities(ctx)
	ts, _ := st.Tokens(ctx, "")
	var cs []tokens.EnrolmentCode
	for _, id := range codeIDs {
		c, _ := st.EnrolmentCode(ctx, id)
		cs = append(cs, c)
	}
	return snapshot{fs, ts, cs, len(st.Events())}
}

func codeID(code string) string { return code[4:12] }

func TestEnrolAndEligibility(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t)
	code, exp, err := fx.svc.NewEnrolmentCode(ctx, "SIAM-1001", "ra:officer")
	if err != nil {
		t.Fatal(err)
	}
	if !exp.Equal(t0.Add(time.Hour)) {
		t.Fatalf("expires %v", exp)
	}
	iss, err := fx.svc.Enrol(ctx, tokens.EnrolRequest{Code: code, CSR: csrFor(t, "SIAM-1001"), Kind: tokens.KindSoftware, Actor: "facility"})
	if err != nil {
		t.Fatal(err)
	}
	f, err := hixext.ParseFacility(iss.Cert)
	if err != nil || f.SIAMID != "SIAM-1001" || f.LicenceNumber != "LIC-SIAM-1001" {
		t.Fatalf("facility extension %+v %v", f, err)
	}
	if _, err := iss.Cert.Verify(x509.VerifyOptions{Roots: fx.ca.Pool(), Intermediates: pool(iss.Chain...),
		CurrentTime: t0, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatal(err)
	}
	ts, _ := fx.svc.Tokens(ctx, "SIAM-1001")
	if len(ts) != 1 || ts[0].Status != tokens.TokenActive || ts[0].Kind != tokens.KindSoftware {
		t.Fatalf("tokens %+v", ts)
	}
	// No event carries the code's secret.
	for _, e := range fx.store.Events() {
		if len(e.Data) > 0 && contains(string(e.Data), code[13:]) {
			t.Fatalf("audit event %s carries the code secret", e.Kind)
		}
	}
}

func contains(s, sub string) bool {
	return len(sub) > 0 && len(s) >= len(sub) && (s == sub || index(s, sub) >= 0)
}

func index(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

func pool(cs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range cs {
		p.AddCert(c)
	}
	return p
}

func TestEnrolBadInputChangesNothing(t *testing.T) {
	ctx := context.Background()
	lapsed := tokentest.Facility("SIAM-3003", t0)
	lapsed.LicenceStatus = tokens.StatusSuspended
	fx := newFixture(t, tokentest.Facility("SIAM-1001", t0), tokentest.Facility("SIAM-2002", t0), lapsed)

	used, _, err := fx.svc.NewEnrolmentCode(ctx, "SIAM-1001", "ra")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fx.svc.Enrol(ctx, tokens.EnrolRequest{Code: used, CSR: csrFor(t, "SIAM-1001"), Kind: tokens.KindSoftware}); err != nil {
		t.Fatal(err)
	}
	fresh, _, _ := fx.svc.NewEnrolmentCode(ctx, "SIAM-1001", "ra")
	expiring, _, _ := fx.svc.NewEnrolmentCode(ctx, "SIAM-2002", "ra")
	fx.clock.Advance(30 * time.Minute)
	fx.svc.CodeTTL = 10 * time.Minute
	// Make 'expiring' expire by moving past its hour; 'fresh' was also made at t0, so create another after.
	fx.clock.Advance(31 * time.Minute)
	fresh2, _, _ := fx.svc.NewEnrolmentCode(ctx, "SIAM-1001", "ra")
	_ = fresh
	wrongSecret := used[:13] + "AAAAAAAAAAAAAAAAAAAAAAAAAA"

	tests := []struct {
		name string
		code string
		csr  *x509.CertificateRequest
		is   error
	}{
		{"reused code", used, csrFor(t, "SIAM-1001"), tokens.ErrCodeUsed},
		{"expired code", expiring, csrFor(t, "SIAM-2002"), tokens.ErrCodeExpired},
		{"unknown code", "HIX-AAAAAAAA-AAAAAAAAAAAAAAAAAAAAAAAAAA", csrFor(t, "SIAM-1001"), tokens.ErrCodeUnknown},
		{"wrong secret", wrongSecret, csrFor(t, "SIAM-1001"), tokens.ErrCodeUnknown},
		{"garbage code", "hello", csrFor(t, "SIAM-1001"), tokens.ErrCodeUnknown},
		{"CSR for another SIAM ID", fresh2, csrFor(t, "SIAM-2002"), tokens.ErrWrongSIAM},
		{"CSR without SIAM ID", fresh2, csrFor(t, ""), tokens.ErrWrongSIAM},
		{"no CSR", fresh2, nil, tokens.ErrBadCSR},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := snap(t, fx.store, codeID(used), codeID(expiring), codeID(fresh2))
			calls := fx.ca.Calls
			_, err := fx.svc.Enrol(ctx, tokens.EnrolRequest{Code: tt.code, CSR: tt.csr, Kind: tokens.KindSoftware})
			if !errors.Is(err, tt.is) {
				t.Fatalf("err = %v, want %v", err, tt.is)
			}
			if contains(err.Error(), tt.code[min(13, len(tt.code)):]) && len(tt.code) > 13 {
				t.Fatalf("error carries the code: %v", err)
			}
			if after := snap(t, fx.store, codeID(used), codeID(expiring), codeID(fresh2)); !reflect.DeepEqual(before, after) {
				t.Fatalf("store changed:\n%+v\n%+v", before, after)
			}
			if fx.ca.Calls != calls {
				t.Fatalf("CA was asked to issue")
			}
		})
	}

	t.Run("facility lapsed after the code", func(t *testing.T) {
		code, _, err := fx.svc.NewEnrolmentCode(ctx, "SIAM-2002", "ra")
		if err != nil {
			t.Fatal(err)
		}
		f := tokentest.Facility("SIAM-2002", t0)
		f.SystemStatus = tokens.StatusRevoked
		fx.store.PutFacilities(ctx, []tokens.Facility{f}, eventFor("lapse"))
		before := snap(t, fx.store, codeID(code))
		_, err = fx.svc.Enrol(ctx, tokens.EnrolRequest{Code: code, CSR: csrFor(t, "SIAM-2002"), Kind: tokens.KindSoftware})
		var ne *tokens.NotEligibleError
		if !errors.Is(err, tokens.ErrNotEligible) || !errors.As(err, &ne) || ne.Reason != tokens.ReasonSystemNotActive {
			t.Fatalf("err = %v", err)
		}
		if after := snap(t, fx.store, codeID(code)); !reflect.DeepEqual(before, after) {
			t.Fatal("store changed")
		}
	})
	t.Run("no code for an ineligible facility", func(t *testing.T) {
		if _, _, err := fx.svc.NewEnrolmentCode(ctx, "SIAM-3003", "ra"); !errors.Is(err, tokens.ErrNotEligible) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestCheckFacility(t *testing.T) {
	ctx := context.Background()
	base := tokentest.Facility("SIAM-1001", t0)
	mod := func(f func(*tokens.Facility)) tokens.Facility { c := base; f(&c); return c }
	tests := []struct {
		name string
		f    tokens.Facility
		at   time.Time
		want tokens.Reason
	}{
		{"good", base, t0, ""},
		{"licence suspended", mod(func(f *tokens.Facility) { f.LicenceStatus = tokens.StatusSuspended }), t0, tokens.ReasonLicenceNotActive},
		{"licence revoked", mod(func(f *tokens.Facility) { f.LicenceStatus = tokens.StatusRevoked }), t0, tokens.ReasonLicenceRevoked},
		{"licence over", base, base.LicenceUntil, tokens.ReasonLicenceExpired},
		{"licence not yet", base, base.LicenceFrom.Add(-time.Second), tokens.ReasonLicenceExpired},
		{"no system", mod(func(f *tokens.Facility) { f.SystemID = "" }), t0, tokens.ReasonNoSystem},
		{"system suspended", mod(func(f *tokens.Facility) { f.SystemStatus = tokens.StatusSuspended }), t0, tokens.ReasonSystemNotActive},
		{"system expired", mod(func(f *tokens.Facility) { f.SystemUntil = t0 }), t0, tokens.ReasonSystemExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := tokens.NewMemStore()
			st.PutFacilities(ctx, []tokens.Facility{tt.f}, eventFor("x"))
			_, err := tokens.CheckFacility(ctx, st, "SIAM-1001", tt.at)
			var ne *tokens.NotEligibleError
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("err = %v", err)
			case tt.want != "" && (!errors.As(err, &ne) || ne.Reason != tt.want || !errors.Is(err, tokens.ErrNotEligible)):
				t.Fatalf("err = %v, want reason %s", err, tt.want)
			}
		})
	}
	if _, err := tokens.CheckFacility(ctx, tokens.NewMemStore(), "SIAM-9999", t0); !errors.Is(err, tokens.ErrNotEligible) {
		t.Fatalf("unknown facility: %v", err)
	}
}

func TestCheckPhysician(t *testing.T) {
	ctx := context.Background()
	st := tokens.NewMemStore()
	st.PutPhysicians(ctx, []tokens.Physician{
		{NationalCode: "0499370899", CouncilNo: "12345", Status: tokens.StatusActive, ValidFrom: t0.AddDate(-1, 0, 0), ValidUntil: t0.AddDate(1, 0, 0)},
		{NationalCode: "1234567891", CouncilNo: "555", Status: tokens.StatusSuspended, ValidFrom: t0.AddDate(-1, 0, 0), ValidUntil: t0.AddDate(1, 0, 0)},
	}, eventFor("x"))
	if p, err := tokens.CheckPhysician(ctx, st, "۰۴۹۹۳۷۰۸۹۹", "12345", t0); err != nil || p.CouncilNo != "12345" {
		t.Fatalf("active: %+v %v", p, err)
	}
	tests := []struct {
		name, nc, cn string
		at           time.Time
		is           error
	}{
		{"wrong council number", "0499370899", "999", t0, tokens.ErrNotEligible},
		{"expired", "0499370899", "12345", t0.AddDate(2, 0, 0), tokens.ErrNotEligible},
		{"suspended", "1234567891", "555", t0, tokens.ErrNotEligible},
		{"unknown", "0000000019", "1", t0, tokens.ErrNotEligible},
		{"bad national code", "0499370898", "12345", t0, tokens.ErrInvalidInput},
		{"bad council number", "0499370899", "12a", t0, tokens.ErrInvalidInput},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tokens.CheckPhysician(ctx, st, tt.nc, tt.cn, tt.at); !errors.Is(err, tt.is) {
				t.Fatalf("err = %v, want %v", err, tt.is)
			}
		})
	}
}

func TestSyncLapsePolicy(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t)
	enrol := func(siam string) tokens.Token {
		code, _, err := fx.svc.NewEnrolmentCode(ctx, siam, "ra")
		if err != nil {
			t.Fatal(err)
		}
		iss, err := fx.svc.Enrol(ctx, tokens.EnrolRequest{Code: code, CSR: csrFor(t, siam), Kind: tokens.KindPhysical})
		if err != nil {
			t.Fatal(err)
		}
		return iss.Token
	}
	a := enrol("SIAM-1001")
	b := enrol("SIAM-2002")
	src := &mapRegistry{m: map[string]tokens.Facility{
		"SIAM-1001": tokentest.Facility("SIAM-1001", t0), "SIAM-2002": tokentest.Facility("SIAM-2002", t0)}}

	// Temporary lapse: hold, then release when the licence is back.
	src.set("SIAM-1001", func(f *tokens.Facility) { f.LicenceStatus = tokens.StatusSuspended })
	rep, err := fx.svc.Sync(ctx, src, "system:sync")
	if err != nil || len(rep.Actions) != 1 || rep.Actions[0].Did != "hold" || rep.Actions[0].Code != 6 {
		t.Fatalf("sync: %+v %v", rep, err)
	}
	if r, ok := fx.ca.Status(a.Serial); !ok || r != 6 {
		t.Fatalf("CA status %d %v", r, ok)
	}
	src.set("SIAM-1001", func(f *tokens.Facility) { f.LicenceStatus = tokens.StatusActive })
	rep, _ = fx.svc.Sync(ctx, src, "system:sync")
	if len(rep.Actions) != 1 || rep.Actions[0].Did != "release" {
		t.Fatalf("release: %+v", rep)
	}
	if _, ok := fx.ca.Status(a.Serial); ok {
		t.Fatal("still held at the CA")
	}
	// Nothing to do: no actions.
	if rep, _ = fx.svc.Sync(ctx, src, "system:sync"); len(rep.Actions) != 0 {
		t.Fatalf("idle sync acted: %+v", rep)
	}
	// System certificate withdrawn: affiliationChanged.
	src.set("SIAM-2002", func(f *tokens.Facility) { f.SystemStatus = tokens.StatusRevoked })
	rep, _ = fx.svc.Sync(ctx, src, "system:sync")
	if len(rep.Actions) != 1 || rep.Actions[0].Did != "revoke" || rep.Actions[0].Code != tokens.ReasonCodeAffiliationChanged {
		t.Fatalf("system revoked: %+v", rep)
	}
	// Facility gone from the registry: cessationOfOperation.
	delete(src.m, "SIAM-1001")
	rep, _ = fx.svc.Sync(ctx, src, "system:sync")
	if len(rep.Actions) != 1 || rep.Actions[0].Code != tokens.ReasonCodeCessationOfOperation {
		t.Fatalf("gone: %+v", rep)
	}
	for _, tk := range []tokens.Token{a, b} {
		got, _ := fx.store.Token(ctx, tk.Serial)
		if got.Status != tokens.TokenRevoked {
			t.Fatalf("%s status %s", tk.Serial, got.Status)
		}
	}
	// The audit log says why.
	var whys []string
	for _, e := range fx.store.Events() {
		if e.Kind == "token.hold" || e.Kind == "token.revoke" {
			whys = append(whys, string(e.Data))
		}
	}
	if len(whys) != 3 || index(whys[0], "licence-not-active") < 0 || index(whys[2], "facility-unknown") < 0 {
		t.Fatalf("audit: %v", whys)
	}
}

type mapRegistry struct{ m map[string]tokens.Facility }

func (r *mapRegistry) Facility(ctx context.Context, siam string) (tokens.Facility, error) {
	f, ok := r.m[siam]
	if !ok {
		return tokens.Facility{}, tokens.ErrNotFound
	}
	return f, nil
}

func (r *mapRegistry) set(siam string, edit func(*tokens.Facility)) {
	f := r.m[siam]
	edit(&f)
	r.m[siam] = f
}

func TestRenew(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t)
	code, _, _ := fx.svc.NewEnrolmentCode(ctx, "SIAM-1001", "ra")
	iss, err := fx.svc.Enrol(ctx, tokens.EnrolRequest{Code: code, CSR: csrFor(t, "SIAM-1001"), Kind: tokens.KindSoftware})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fx.svc.Renew(ctx, iss.Cert, csrFor(t, "SIAM-2002"), "adapter"); !errors.Is(err, tokens.ErrWrongSIAM) {
		t.Fatalf("renew for another SIAM: %v", err)
	}
	fx.clock.Advance(20 * 24 * time.Hour)
	next, err := fx.svc.Renew(ctx, iss.Cert, csrFor(t, "SIAM-1001"), "adapter")
	if err != nil {
		t.Fatal(err)
	}
	old, _ := fx.store.Token(ctx, iss.Token.Serial)
	if old.Status != tokens.TokenSuperseded || next.Token.Status != tokens.TokenActive {
		t.Fatalf("old %s new %s", old.Status, next.Token.Status)
	}
	if _, err := fx.svc.Renew(ctx, iss.Cert, csrFor(t, "SIAM-1001"), "adapter"); !errors.Is(err, tokens.ErrConflict) {
		t.Fatalf("renew from a superseded token: %v", err)
	}
}

func TestServiceRevoke(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t)
	code, _, _ := fx.svc.NewEnrolmentCode(ctx, "SIAM-1001", "ra")
	iss, _ := fx.svc.Enrol(ctx, tokens.EnrolRequest{Code: code, CSR: csrFor(t, "SIAM-1001"), Kind: tokens.KindSoftware})
	if err := fx.svc.Revoke(ctx, iss.Token.Serial, 6, "ra"); !errors.Is(err, tokens.ErrInvalidInput) {
		t.Fatalf("hold through Revoke: %v", err)
	}
	if err := fx.svc.Revoke(ctx, iss.Token.Serial, tokens.ReasonCodeKeyCompromise, "ra"); err != nil {
		t.Fatal(err)
	}
	if r, ok := fx.ca.Status(iss.Token.Serial); !ok || r != 1 {
		t.Fatalf("CA: %d %v", r, ok)
	}
}

func eventFor(kind string) audit.Event { return audit.Event{Time: t0, Kind: kind, Actor: "test"} }
