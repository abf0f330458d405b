package signing

import (
	"bytes"
	"errors"
	"fmt"
	"time"
)

// Validation of archive-time-stamp-v3 (ETSI EN 319 122-1 §5.5.2; EN 319 102-1 §5.6.3 validation process for
// signatures with archival data). The Verifier calls checkArchive for a B-LT signature that has archive
// timestamps; the rules, in order, for the archive timestamps sorted by genTime:
//  1. each token carries exactly one ats-hash-index-v3, with an allowed hash algorithm (FORMAT_FAILURE);
//  2. every hash in its index names an element the signature still has: a certificate, a CRL, or a value of an
//     unsigned attribute; an element removed or altered after the timestamp leaves a hash that names nothing
//     (HASH_FAILURE);
//  3. its message imprint covers eContentType, the content's hash, the SignerInfo's signed fields and its index
//     (§5.5.2.2), and the token is a valid timestamp from a trusted TSA (NO_POE);
//  4. it covers the signature timestamp and the revocation values, i.e. the B-LT it archives (NO_POE when a
//     first archive timestamp does not), and every earlier archive timestamp (renewal chain);
//  5. it is not older than the signature timestamp, and each renewal was made before the previous archive
//     TSA's certificate expired (TIMESTAMP_ORDER_FAILURE, NO_POE).

var errArchiveOrder = errors.New("archive timestamp is older than the signature timestamp")

// checkArchive validates every archive timestamp of sd; sigTS is the best signature time from the signature
// timestamps. It records each in r.Timestamps.
func (v *Verifier) checkArchive(sd *signedData, sigTS time.Time, r *Report) (SubIndication, string) {
	ats, err := archiveTimestamps(sd)
	if err != nil {
		return FormatFailure, err.Error()
	}
	si := &sd.signers[0]
	inputs, owner, err := unsignedValueHashInputs(si)
	if err != nil {
		return FormatFailure, err.Error()
	}
	for k, a := range ats {
		ti := TimestampInfo{Type: "archive"}
		if a.hash == 0 {
			return CryptoConstraintsFailure, "archive timestamp hash algorithm not allowed"
		}
		// Rule 2: the index names only what is still there.
		hashAll := func(items [][]byte) map[string]bool {
			m := make(map[string]bool, len(items))
			for _, it := range items {
				sum, n := digestOf(a.idx.hash, it)
				m[string(sum[:n])] = true
			}
			return m
		}
		have := [3]map[string]bool{hashAll(sd.certs), hashAll(sd.crls), hashAll(inputs)}
		for j, list := range [][][]byte{a.idx.certs, a.idx.crls, a.idx.values} {
			for _, h := range list {
				if !have[j][string(h)] {
					return HashFailure, fmt.Sprintf("archive timestamp %d: an element it covers (%s) was removed or altered",
						k+1, [3]string{"certificate", "CRL", "unsigned attribute value"}[j])
				}
			}
		}
		// Rule 4: what it must cover.
		covered := make(map[int]bool)
		for _, h := range a.idx.values {
			for i, in := range inputs {
				if sum, n := digestOf(a.idx.hash, in); bytes.Equal(sum[:n], h) {
					covered[owner[i]] = true
				}
			}
		}
		for i := range si.unsignedAttrs {
			oid := si.unsignedAttrs[i].oid
			if (bytes.Equal(oid, dSigTimeStamp) || bytes.Equal(oid, dRevocationVals)) && !covered[i] {
				return NoPOE, fmt.Sprintf("archive timestamp %d does not cover the signature's timestamp and revocation values", k+1)
			}
		}
		for _, prev := range ats[:k] {
			if !covered[prev.attr] {
				return NoPOE, fmt.Sprintf("archive timestamp %d does not cover the archive timestamp of %s", k+1, prev.genTime.Format(time.RFC3339))
			}
		}
		// Rule 3: the imprint and the token.
		in, err := archiveImprintInput(sd, a.hash, a.idx.raw)
		if err != nil {
			return FormatFailure, err.Error()
		}
		gen, err := v.checkTimestamp(a.token, nil, in, &ti)
		if err != nil {
			ti.Detail = err.Error()
			r.Timestamps = append(r.Timestamps, ti)
			return NoPOE, fmt.Sprintf("archive timestamp %d not accepted: %v", k+1, err)
		}
		ti.Valid = true
		r.Timestamps = append(r.Timestamps, ti)
		// Rule 5: order and renewal in time.
		if gen.Before(sigTS) {
			return TimestampOrderFailure, errArchiveOrder.Error()
		}
		if k > 0 {
			prev := ats[k-1]
			if prev.tsa == nil || gen.After(prev.tsa.NotAfter) {
				return NoPOE, fmt.Sprintf("archive timestamp of %s was renewed only after its TSA certificate expired", prev.genTime.Format(time.RFC3339))
			}
		}
	}
	return "", ""
}
