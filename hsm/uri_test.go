package hsm

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/mohr-hix/mohr/keys"
)

func TestParseURI(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want URI
		str  string // canonical String; "" means in
	}{
		{
			name: "issue example, query attributes in the path",
			in:   "pkcs11:token=MohrCA;object=intermediate;module-path=/usr/lib/softhsm/libsofthsm2.so;pin-source=file:/path/pin",
			want: URI{Token: "MohrCA", Object: "intermediate", ModulePath: "/usr/lib/softhsm/libsofthsm2.so", PINSource: "file:/path/pin"},
			str:  "pkcs11:token=MohrCA;object=intermediate?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/path/pin",
		},
		{
			name: "RFC 7512 section 3 example with id",
			in:   "pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;manufacturer=Snake%20Oil,%20Inc.;model=1.0;object=my-certificate;type=cert;id=%69%95%3E%5C%F4%BD%EC%91;serial=",
			want: URI{Token: "The Software PKCS#11 Softtoken", Manufacturer: "Snake Oil, Inc.", Model: "1.0", Object: "my-certificate", Type: "cert", ID: []byte{0x69, 0x95, 0x3e, 0x5c, 0xf4, 0xbd, 0xec, 0x91}},
			str:  "pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;manufacturer=Snake%20Oil,%20Inc.;model=1.0;object=my-certificate;type=cert;id=%69%95%3E%5C%F4%BD%EC%91",
		},
		{
			name: "env pin-source, upper-case scheme and names",
			in:   "PKCS11:Token=A;OBJECT=b?pin-source=env:MOHR_PIN",
			want: URI{Token: "A", Object: "b", PINSource: "env:MOHR_PIN"},
			str:  "pkcs11:token=A;object=b?pin-source=env:MOHR_PIN",
		},
		{
			name: "pin-value is kept but never printed",
			in:   "pkcs11:token=A;object=b?pin-value=123456",
			want: URI{Token: "A", Object: "b", pinValue: "123456"},
			str:  "pkcs11:token=A;object=b",
		},
		{
			name: "vendor and unused standard attributes survive",
			in:   "pkcs11:token=A;slot-id=3;x-vendor=v%3Bw?x-q=1&module-name=softhsm2",
			want: URI{Token: "A", ModuleName: "softhsm2", extra: []uriAttr{{"slot-id", "3", false}, {"x-vendor", "v;w", false}, {"x-q", "1", true}}},
			str:  "pkcs11:token=A;slot-id=3;x-vendor=v%3Bw?module-name=softhsm2&x-q=1",
		},
		{name: "empty", in: "pkcs11:", want: URI{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := ParseURI(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*u, tc.want) {
				t.Fatalf("got %+v, want %+v", *u, tc.want)
			}
			want := tc.str
			if want == "" {
				want = tc.in
			}
			if got := u.String(); got != want {
				t.Fatalf("String() = %q, want %q", got, want)
			}
		})
	}
}

func TestParseURIErrors(t *testing.T) {
	for _, in := range []string{
		"", "pkcs11", "file:/key.pem", "pkcs11:token", "pkcs11:token=a;token=b", "pkcs11:token=a?token=b",
		"pkcs11:object=%zz", "pkcs11:object=%4", "pkcs11:type=secret", "pkcs11:=x", "pkcs11:t o=x",
		"pkcs11:token=a?pin-value=s3cret&pin-value=s3cret",
	} {
		_, err := ParseURI(in)
		if !errors.Is(err, ErrBadURI) || !errors.Is(err, keys.ErrBadURI) {
			t.Errorf("ParseURI(%q): got %v, want ErrBadURI", in, err)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("error %q quotes the PIN", err)
		}
	}
}

func TestReadPIN(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "pin")
	os.WriteFile(f, []byte("4321\r\n"), 0o600)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	t.Setenv("MOHR_TEST_PIN", "9876")
	for _, tc := range []struct {
		src, value, want string
		err              error
	}{
		{src: "file:" + f, want: "4321"},
		{src: "file://" + f, want: "4321"},
		{src: "file://localhost" + f, want: "4321"},
		{src: f, want: "4321"},
		{src: "env:MOHR_TEST_PIN", want: "9876"},
		{value: "1111", src: "env:MOHR_TEST_PIN", want: "1111"},
		{src: "env:MOHR_TEST_NO_SUCH_VAR", err: ErrPINSource},
		{src: "file:" + filepath.Join(dir, "missing"), err: os.ErrNotExist},
		{src: "file:" + empty, err: ErrPINSource},
		{src: "file://remote.example/pin", err: ErrPINSource},
		{err: ErrPINSource},
	} {
		u := &URI{Token: "t", PINSource: tc.src, pinValue: tc.value}
		got, err := u.readPIN()
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("%q: got %v, want %v", tc.src, err, tc.err)
			}
			continue
		}
		if err != nil || string(got) != tc.want {
			t.Errorf("%q: got %q, %v; want %q", tc.src, got, err, tc.want)
		}
	}
}

// FuzzParseURI checks that whatever ParseURI accepts, String prints in a form that parses back to
// the same URI (without pin-value, which String never prints), and that String is canonical.
func FuzzParseURI(f *testing.F) {
	for _, s := range []string{
		"pkcs11:token=MohrCA;object=intermediate;module-path=/usr/lib/softhsm/libsofthsm2.so;pin-source=file:/path/pin",
		"pkcs11:token=A;object=b?pin-source=env:PIN&module-path=/m.so",
		"pkcs11:token=A;id=%01%02%FF;type=private?pin-value=1234",
		"pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;manufacturer=Snake%20Oil,%20Inc.;model=1.0;object=my-certificate;type=cert;id=%69%95%3E%5C%F4%BD%EC%91;serial=",
		"pkcs11:x-a=1;slot-id=2?x-b=%3F%26&module-name=p11-kit",
		"pkcs11:",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u1, err := ParseURI(s)
		if err != nil {
			return
		}
		s1 := u1.String()
		if u1.pinValue != "" && strings.Contains(s1, "pin-value") {
			t.Fatalf("String() prints pin-value: %q", s1)
		}
		u2, err := ParseURI(s1)
		if err != nil {
			t.Fatalf("ParseURI(%q) = %v; input %q", s1, err, s)
		}
		want := *u1
		want.pinValue = ""
		if !reflect.DeepEqual(*u2, want) {
			t.Fatalf("round trip changed the URI:\n in  %q\n out %q\n %+v\n %+v", s, s1, want, *u2)
		}
		if s2 := u2.String(); s2 != s1 {
			t.Fatalf("String not canonical: %q then %q", s1, s2)
		}
	})
}
