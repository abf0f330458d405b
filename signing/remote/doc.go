// Package remote is Mohr's remote signing service: physicians' signing keys held in the signing centre's HSM
// (package hsm, through the KeyStore interface), each signature activated by the physician alone with a
// WebAuthn passkey, after CEN EN 419 241-1 ("Trustworthy Systems Supporting Server Signing", signature
// activation level SCAL2) and with the semantics of the Cloud Signature Consortium API v2 (credentials,
// credentials/authorize, signatures/signHash). The HTTP binding of the CSC API lives in package api.
//
// The sequence (docs/remote-signing.md):
//
//  1. Enrol (an RA officer, in person): generate the key in the HSM (non-extractable, labelled per physician),
//     issue a physician-signing certificate that also asserts the remote-signing policy
//     (hixext.OIDPolicyRemoteSigning), and start the registration of the physician's passkey.
//  2. BeginActivation: the signing application sends the hashes to sign (1 to Config.MaxHashes); Mohr stores a
//     one-use nonce and answers a WebAuthn challenge = SHA-256 over a domain label, the credential ID, the nonce
//     and exactly those hashes (Challenge).
//  3. Activate: the assertion is checked (origin, RP ID, the challenge recomputed from the stored hashes, user
//     verification required, signature counter); Mohr issues signature activation data (SAD) bound to the
//     credential and those hashes, valid for a short time, each hash once.
//  4. SignHash: the SAD is redeemed for hashes it covers, then and only then the HSM signs.
//
// Every step, and every refusal, is an audit event with the document hashes.
package remote
