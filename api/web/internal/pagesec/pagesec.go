// Package pagesec holds the HTTP security headers every page Mohr serves to people sets (the verification
// page and the remote-signing registration and activation pages), so the pages cannot drift apart.
package pagesec

import "net/http"

// Set sets the headers on h: the page loads only its own files and talks only to its own origin (the
// offline check fetches /trust-bundle; the remote-signing pages post to their own routes), it cannot be
// framed (a framed WebAuthn prompt or verdict is a clickjacking vector), it sends no referrer (URLs may
// hold an activation handle), and it shares no browsing context or resources with other origins.
func Set(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; "+
		"font-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
}
