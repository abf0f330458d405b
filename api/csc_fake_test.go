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

func (f fakeRemote) ActivateParked(_ context.Context, _ remote.Caller, _, _ string) (remote.Activation, error) {
	return remote.Activation{SAD: "sad", Hashes: [][]byte{make([]byte, 32)}, ExpiresAt: testNow.Add(time.Minute)}, f.r.rec("Remote.ActivateParked")
}

func (f fakeRemote) SignHash(_ context.Context, _ remote.Caller, _, _ string, h [][]byte) ([][]byte, error) {
	return make([][]byte, len(h)), f.r.rec("Remote.SignHash")
}

func (f fakeRemote) MaxHashes() int { return 100 }

func hexDecode(dst, src []byte) (int, error) { return hex.Decode(dst, src) }

// The RA and lifecycle side (remote_ra.go).

func (f fakeRemote) Enrol(_ context.Context, _ remote.Caller, r remote.EnrolRequest) (remote.Credential, remote.Registration, error) {
	return remote.Credential{ID: "c1", CouncilNumber: r.CouncilNumber, Status: remote.StatusPending},
		remote.Registration{ID: "r1", Code: "AAAAA-BBBBB-CCCCC-DDDDD", ExpiresAt: testNow.Add(time.Hour)}, f.r.rec("Remote.Enrol")
}

func (f fakeRemote) BeginPasskeyRegistration(context.Context, remote.Caller, string) (remote.Registration, error) {
	return remote.Registration{ID: "r1", Code: "AAAAA-BBBBB-CCCCC-DDDDD", ExpiresAt: testNow.Add(time.Hour)}, f.r.rec("Remote.BeginPasskeyRegistration")
}

func (f fakeRemote) Lookup(_ context.Context, _ remote.Caller, id string) (remote.Credential, error) {
	return remote.Credential{ID: id, Status: remote.StatusActive}, f.r.rec("Remote.Lookup")
}

func (f fakeRemote) CredentialsOfCouncil(context.Context, remote.Caller, string) ([]remote.Credential, error) {
	return nil, f.r.rec("Remote.CredentialsOfCouncil")
}

func (f fakeRemote) Suspend(context.Context, remote.Caller, string, string) error {
	return f.r.rec("Remote.Suspend")
}
func (f fakeRemote) Resume(context.Context, remote.Caller, string) error {
	return f.r.rec("Remote.Resume")
}
func (f fakeRemote) Block(context.Context, remote.Caller, string, string) error {
	return f.r.rec("Remote.Block")
}
func (f fakeRemote) Revoke(context.Context, remote.Caller, string, int) error {
	return f.r.rec("Remote.Revoke")
}
func (f fakeRemote) Rekey(_ context.Context, _ remote.Caller, id string) (remote.Credential, error) {
	return remote.Credential{ID: id + "n", Status: remote.StatusActive}, f.r.rec("Remote.Rekey")
}

// The national ID card factor (csc_authdata.go, remote_card.go).

func (f fakeRemote) ActivateWithCard(_ context.Context, _ remote.Caller, _, _ string, _ remote.CardAnswer) (remote.Activation, error) {
	return remote.Activation{SAD: "sad", Hashes: [][]byte{make([]byte, 32)}, ExpiresAt: testNow.Add(time.Minute)}, f.r.rec("Remote.ActivateWithCard")
}

func (f fakeRemote) Factors(context.Context, remote.Caller, string) ([][]byte, []remote.Card, error) {
	return nil, nil, nil
}

func (f fakeRemote) BeginCardChallenge(_ context.Context, _ remote.Caller, p remote.CardPurpose, _ string) (remote.CardChallenge, error) {
	return remote.CardChallenge{ID: "cc1", Purpose: p, Challenge: make([]byte, 32), ExpiresAt: testNow.Add(time.Minute)}, f.r.rec("Remote.BeginCardChallenge")
}

func (f fakeRemote) RegisterCard(_ context.Context, _ remote.Caller, id, _ string, _ remote.CardAnswer) (remote.Card, error) {
	return remote.Card{CredentialID: id, Fingerprint: "00"}, f.r.rec("Remote.RegisterCard")
}
