package api

import (
	"context"
	"time"

	"encoding/hex"

	"github.com/go-webauthn/webauthn/protocol"

	"github.com/mohr-hix/mohr/signing/remote"
)

// fakeRemote is the remote signing service of the matrix test: it records calls and answers successfully.
type fakeRemote struct{ r *recorder }

func (f fakeRemote) List(context.Context, remote.Caller) ([]remote.Credential, error) {
	return nil, f.r.rec("Remote.List")
}

func (f fakeRemote) Info(_ context.Context, c remote.Caller, id string) (remote.Credential, error) {
	return remote.Credential{ID: id, CouncilNumber: c.CouncilNumber, Status: remote.StatusActive, Chain: [][]byte{}}, f.r.rec("Remote.Info")
}

func (f fakeRemote) BeginActivation(context.Context, remote.Caller, string, [][]byte) (remote.ActivationRequest, error) {
	return remote.ActivationRequest{ID: "aa", Options: &protocol.CredentialAssertion{}, ExpiresAt: testNow.Add(time.Minute)}, f.r.rec("Remote.BeginActivation")
}

func (f fakeRemote) Activate(_ context.Context, _ remote.Caller, _, _ string, _ []byte) (remote.Activation, error) {
	return remote.Activation{SAD: "sad", Hashes: [][]byte{make([]byte, 32)}, ExpiresAt: testNow.Add(time.Minute)}, f.r.rec("Remote.Activate")
}

func (f fakeRemote) SignHash(_ context.Context, _ remote.Caller, _, _ string, h [][]byte) ([][]byte, error) {
	return make([][]byte, len(h)), f.r.rec("Remote.SignHash")
}

func (f fakeRemote) MaxHashes() int { return 100 }

func hexDecode(dst, src []byte) (int, error) { return hex.Decode(dst, src) }
