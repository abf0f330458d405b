package hsm

import (
	"context"
	"fmt"

	"github.com/miekg/pkcs11"
)

// DestroyKey destroys the private key, public key and certificate objects uri names (PKCS#11 v2.40 §5.7,
// C_DestroyObject). The URI must name an object (object= or id=), never a whole token. It logs in, since
// private keys are private objects. Destruction is never repeated automatically; ErrObjectNotFound when nothing
// matched.
func (o *Opener) DestroyKey(ctx context.Context, uri string) error {
	u, p, err := o.resolve(uri)
	if err != nil {
		return err
	}
	if err := needObject(u, "private"); err != nil {
		return err
	}
	var n int
	err = p.do(ctx, u, true, func(s session) error {
		b := p.mod.p
		n = 0
		for _, cls := range []uint{pkcs11.CKO_PRIVATE_KEY, pkcs11.CKO_PUBLIC_KEY, pkcs11.CKO_CERTIFICATE} {
			hs, err := findObjects(b, s.h, objectTemplate(cls, u.Object, u.ID), 16)
			if err != nil {
				return err
			}
			for _, h := range hs {
				if err := b.DestroyObject(s.h, h); err != nil {
					return noRetryError{rvError("C_DestroyObject", err)}
				}
				n++
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("%w: %s on token %q", ErrObjectNotFound, describe(u.Object, u.ID), u.Token)
	}
	return nil
}
