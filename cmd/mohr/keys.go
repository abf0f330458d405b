package main

import (
	"github.com/mohr-hix/mohr/hsm"
	"github.com/mohr-hix/mohr/keys"
)

// newKeyResolver returns the resolver every command uses to turn a key URI into a crypto.Signer:
// file: keys, pkcs11: keys through package hsm, card: keys through package cardreader.
func newKeyResolver() *keys.Resolver {
	r := keys.NewResolver()
	r.Register("pkcs11", hsmOpener())
	registerCardOpener(r)
	return r
}

var hsmOpenerOnce *hsm.Opener

// hsmOpener returns the process's one hsm.Opener (a PKCS#11 module can be initialised once per process).
func hsmOpener() *hsm.Opener {
	if hsmOpenerOnce == nil {
		mod := "/usr/lib/softhsm/libsofthsm2.so"
		if c, err := loadConfig(); err == nil && c.HSM.Module != "" {
			mod = c.HSM.Module
		}
		hsmOpenerOnce = hsm.NewOpener(mod)
	}
	return hsmOpenerOnce
}

// registerCardOpener adds the card: scheme; see card wiring.
var registerCardOpener = func(*keys.Resolver) {}
