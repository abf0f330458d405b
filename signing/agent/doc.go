// Package agent is the physician's signing agent: a service on the physician's workstation that signs
// prescriptions (HIX-Rx-CAdES B-B, package signing) with the key on the inserted medical-council card, for the
// clinic's software (the EMR) calling it over a local HTTP API, and submits what it signed to the exchange.
//
// Comfort signing: the physician enters the PIN once (through a callback the EMR never sees) and may then sign
// up to N prescriptions within T (at most 250 and 24 hours, the limits Germany's comfort signature allows).
// Every signature is still computed on the card; each is recorded in a hash-chained local audit file that holds
// digests only. The session ends when the card leaves the reader, the limit is reached, the time is up, or the
// physician ends it. See docs/agent.md for the API and the security model.
//
// The package never logs; errors are "agent:"-prefixed and wrap the sentinels below, so the HTTP edge
// (Server) can map them to problem documents without echoing card or network detail.
package agent
