package hsm

import (
	"context"
	"fmt"

	"github.com/miekg/pkcs11"
)

// SlotInfo describes a slot and the token in it, for "mohr hsm list". Slot numbers are shown for
// information only; Mohr never addresses a token by slot.
type SlotInfo struct {
	Slot            uint
	Description     string
	TokenPresent    bool
	Label           string // token label, the RFC 7512 "token" attribute
	Manufacturer    string
	Model           string
	Serial          string
	Initialized     bool
	LoginRequired   bool
	UserPINLocked   bool
	UserPINCountLow bool
}

// Slots lists the slots of the module at modulePath (or the default module) and their tokens
// (PKCS#11 v2.40 section 5.5: C_GetSlotList, C_GetSlotInfo, C_GetTokenInfo).
func (o *Opener) Slots(ctx context.Context, modulePath string) ([]SlotInfo, error) {
	m, err := o.module(modulePath)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	slots, err := m.p.GetSlotList(false)
	if rv(err) == pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED {
		if err = m.reinit(m.gen.Load()); err == nil {
			slots, err = m.p.GetSlotList(false)
		}
	}
	if err != nil {
		return nil, rvError("C_GetSlotList", err)
	}
	var out []SlotInfo
	for _, sl := range slots {
		si, err := m.p.GetSlotInfo(sl)
		if err != nil {
			return nil, rvError("C_GetSlotInfo", err)
		}
		info := SlotInfo{Slot: sl, Description: si.SlotDescription, TokenPresent: si.Flags&pkcs11.CKF_TOKEN_PRESENT != 0}
		if info.TokenPresent {
			if ti, err := m.p.GetTokenInfo(sl); err == nil {
				info.Label, info.Manufacturer, info.Model, info.Serial = ti.Label, ti.ManufacturerID, ti.Model, ti.SerialNumber
				info.Initialized = ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED != 0
				info.LoginRequired = ti.Flags&pkcs11.CKF_LOGIN_REQUIRED != 0
				info.UserPINLocked = ti.Flags&pkcs11.CKF_USER_PIN_LOCKED != 0
				info.UserPINCountLow = ti.Flags&pkcs11.CKF_USER_PIN_COUNT_LOW != 0
			}
		}
		out = append(out, info)
	}
	return out, nil
}

// ObjectInfo describes a key or certificate object on a token, for "mohr hsm list".
type ObjectInfo struct {
	Class   string // "private", "public" or "cert", as in the RFC 7512 "type" attribute
	Label   string
	ID      []byte
	KeyType string // "EC", "RSA", "EdDSA" (CKK_EC_EDWARDS) or empty
	// For private keys: CKA_SENSITIVE, CKA_EXTRACTABLE, CKA_ALWAYS_SENSITIVE, CKA_NEVER_EXTRACTABLE.
	Sensitive, Extractable, AlwaysSensitive, NeverExtractable bool
	// URI names the object (token, object, id, type), without module or PIN.
	URI string
}

// Objects lists the private keys, public keys and certificates on the token uri names (its object and
// id attributes, if any, narrow the list). With a PIN source in the URI it logs in, so that private
// objects are listed too.
func (o *Opener) Objects(ctx context.Context, uri string) ([]ObjectInfo, error) {
	u, p, err := o.resolve(uri)
	if err != nil {
		return nil, err
	}
	var out []ObjectInfo
	err = p.do(ctx, u, u.HasPIN(), func(s session) error {
		out = out[:0]
		b := p.mod.p
		for _, cls := range []uint{pkcs11.CKO_PRIVATE_KEY, pkcs11.CKO_PUBLIC_KEY, pkcs11.CKO_CERTIFICATE} {
			hs, err := findObjects(b, s.h, objectTemplate(cls, u.Object, u.ID), 10000)
			if err != nil {
				return err
			}
			for _, h := range hs {
				oi, err := objectInfo(b, s.h, h, cls)
				if err != nil {
					return err
				}
				ou := URI{Token: u.Token, Object: oi.Label, ID: oi.ID, Type: oi.Class}
				oi.URI = ou.String()
				out = append(out, oi)
			}
		}
		return nil
	})
	return out, err
}

func objectInfo(b backend, sh pkcs11.SessionHandle, h pkcs11.ObjectHandle, cls uint) (ObjectInfo, error) {
	types := []uint{pkcs11.CKA_LABEL, pkcs11.CKA_ID}
	if cls != pkcs11.CKO_CERTIFICATE {
		types = append(types, pkcs11.CKA_KEY_TYPE)
	}
	if cls == pkcs11.CKO_PRIVATE_KEY {
		types = append(types, pkcs11.CKA_SENSITIVE, pkcs11.CKA_EXTRACTABLE, pkcs11.CKA_ALWAYS_SENSITIVE, pkcs11.CKA_NEVER_EXTRACTABLE)
	}
	a, err := attrs(b, sh, h, types...)
	if err != nil {
		return ObjectInfo{}, err
	}
	oi := ObjectInfo{Label: string(a[pkcs11.CKA_LABEL]), ID: a[pkcs11.CKA_ID]}
	switch cls {
	case pkcs11.CKO_PRIVATE_KEY:
		oi.Class = "private"
		oi.Sensitive = boolAttr(a[pkcs11.CKA_SENSITIVE])
		oi.Extractable = boolAttr(a[pkcs11.CKA_EXTRACTABLE])
		oi.AlwaysSensitive = boolAttr(a[pkcs11.CKA_ALWAYS_SENSITIVE])
		oi.NeverExtractable = boolAttr(a[pkcs11.CKA_NEVER_EXTRACTABLE])
	case pkcs11.CKO_PUBLIC_KEY:
		oi.Class = "public"
	default:
		oi.Class = "cert"
	}
	switch kt := ulong(a[pkcs11.CKA_KEY_TYPE]); {
	case cls == pkcs11.CKO_CERTIFICATE:
	case kt == pkcs11.CKK_EC:
		oi.KeyType = "EC"
	case kt == pkcs11.CKK_RSA:
		oi.KeyType = "RSA"
	case kt == ckkECEdwards:
		oi.KeyType = "EdDSA"
	default:
		oi.KeyType = fmt.Sprintf("%#x", kt)
	}
	return oi, nil
}
