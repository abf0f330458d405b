package cardreader

import (
	"context"
	"crypto"
	"fmt"
	"net/url"
	"strings"

	"github.com/mohr-hix/mohr/keys"
)

// URI is a parsed "card:" key URI, for example
//
//	card:reader=Virtual%20PCD%2000%2000;profile=medical-council;key=sign
//
// Attributes are ';'-separated name=value pairs, values percent-encoded as in RFC 7512's pkcs11: URIs.
// reader may be omitted (the first reader holding a card is used); key is "sign" or "auth" (PIV: "sign" is
// 9C, "auth" is 9A).
type URI struct {
	Reader  string
	Profile string
	Key     KeySlot
}

// ParseURI parses a card: URI. Unknown attributes are errors (keys.ErrBadURI), so a typo is not ignored.
func ParseURI(uri string) (URI, error) {
	rest, ok := strings.CutPrefix(uri, "card:")
	if !ok {
		return URI{}, fmt.Errorf("%w: not a card: URI", keys.ErrBadURI)
	}
	u := URI{Key: SlotSign}
	for _, attr := range strings.Split(rest, ";") {
		if attr == "" {
			continue
		}
		name, val, ok := strings.Cut(attr, "=")
		if !ok {
			return URI{}, fmt.Errorf("%w: attribute %q without '='", keys.ErrBadURI, attr)
		}
		v, err := url.PathUnescape(val)
		if err != nil {
			return URI{}, fmt.Errorf("%w: %v", keys.ErrBadURI, err)
		}
		switch name {
		case "reader":
			u.Reader = v
		case "profile":
			u.Profile = v
		case "key":
			u.Key = KeySlot(v)
		default:
			return URI{}, fmt.Errorf("%w: unknown card: attribute %q", keys.ErrBadURI, name)
		}
	}
	switch u.Profile {
	case ProfileCouncil, ProfilePIV:
	case ProfileNationalID:
		return URI{}, fmt.Errorf("%w: the national ID card has no signing key for documents", keys.ErrUnsupportedKey)
	default:
		return URI{}, fmt.Errorf("%w: profile must be %s or %s", keys.ErrBadURI, ProfileCouncil, ProfilePIV)
	}
	if u.Key != SlotSign && u.Key != SlotAuth {
		return URI{}, fmt.Errorf("%w: key must be sign or auth", keys.ErrBadURI)
	}
	return u, nil
}

// String returns the URI in canonical form.
func (u URI) String() string {
	var b strings.Builder
	b.WriteString("card:")
	if u.Reader != "" {
		b.WriteString("reader=" + url.PathEscape(u.Reader) + ";")
	}
	b.WriteString("profile=" + url.PathEscape(u.Profile) + ";key=" + url.PathEscape(string(u.Key)))
	return b.String()
}

// Opener serves "card:" URIs for a keys.Resolver: resolver.Register("card", &cardreader.Opener{PIN: f}).
// Each key it opens holds its own PC/SC context and card connection; close it through its Close method
// (reach it with keys' Unwrap) when done.
type Opener struct {
	// PIN is asked once for every signature; it must not keep or log the PIN.
	PIN keys.PINFunc
	// Council is the medical-council profile; the zero value means DefaultCouncilProfile.
	Council CouncilProfile
}

var _ keys.Opener = (*Opener)(nil)

// OpenSigner opens the card key uri names.
func (o *Opener) OpenSigner(ctx context.Context, uri string) (crypto.Signer, error) {
	u, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	pc, err := Establish(ctx)
	if err != nil {
		return nil, err
	}
	card, err := connectURI(ctx, pc, u.Reader)
	if err != nil {
		pc.Release()
		return nil, err
	}
	var s crypto.Signer
	switch u.Profile {
	case ProfileCouncil:
		prof := o.Council
		if prof.AID == nil {
			prof = DefaultCouncilProfile()
		}
		var cc *CouncilCard
		if cc, err = Council(ctx, card, prof); err == nil {
			s, err = cc.Key(ctx, u.Key, o.PIN)
		}
	case ProfilePIV:
		slot := PIVKeySign
		if u.Key == SlotAuth {
			slot = PIVKeyAuth
		}
		var p *PIVCard
		if p, err = PIV(ctx, card); err == nil {
			s, err = p.Key(ctx, slot, o.PIN)
		}
	}
	if err != nil {
		card.Close()
		pc.Release()
		return nil, err
	}
	if k, ok := s.(interface{ Unwrap() crypto.Signer }); ok {
		if ck, ok := k.Unwrap().(*cardKey); ok {
			ck.release = pc.Release
		}
	}
	return s, nil
}

// connectURI connects to reader, or to the first reader that holds a card when reader is empty.
func connectURI(ctx context.Context, pc *Context, reader string) (*Card, error) {
	if reader != "" {
		return pc.Connect(ctx, reader)
	}
	st, err := pc.Status(ctx)
	if err != nil {
		return nil, err
	}
	for _, s := range st {
		if s.Present {
			return pc.Connect(ctx, s.Reader)
		}
	}
	return nil, ErrNoCard
}
