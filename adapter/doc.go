// Package adapter is the HIX adapter runtime, both ends of a facility's connection to the exchange.
//
// Facility side (Adapter): holds the facility's token (a crypto.Signer on a PKCS#11 device or from a software
// keystore, and its certificate), offers the facility's information system a plain HTTP endpoint on the
// loopback interface and forwards each request to the exchange over mutual TLS. It renews the certificate at
// two thirds of its lifetime, rekeys on request, and rides out outages of the CA with retries and exponential
// backoff while the current certificate stays valid.
//
// Exchange side (Gateway): an http.Handler that admits only facility-adapter certificates (RFC 5280 path
// validation to the health intermediate CA; extended key usage clientAuth; the facility extension binding a
// SIAM ID and licence number), not revoked (RevocationChecker, with an RFC 6960 OCSP client and a cache bounded
// by the response's nextUpdate) and held by a facility in good standing (StandingChecker, cached for a
// configurable propagation time). It fails closed: when revocation or standing cannot be determined the
// request is refused. The verified SIAM ID goes upstream in the X-HIX-SIAM-ID header; the header is always
// removed from incoming requests first.
//
// The package imports no implementation from package tokens: registry standing and renewal arrive through the
// StandingChecker and Renewer interfaces. It never logs; errors start with "adapter:".
package adapter
