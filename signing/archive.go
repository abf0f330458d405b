package signing

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"slices"
	"time"

	"golang.org/x/crypto/cryptobyte"
)

// Archive timestamps (B-LTA). Mohr uses the simpler scheme documented in docs/signature-policy.md §4 rather
// than ETSI EN 319 122-1 §5.5.3 archive-time-stamp-v3 with its ats-hash-index-v3: an unsigned attribute
// mohr-archive-time-stamp whose TimeStampToken covers the encapContentInfo, all certificates and revocation
// data, the signed attributes, signature algorithm and value, all other unsigned attributes, and every earlier
// archive timestamp. Once one exists, only further archive timestamps may be added, so no hash index is needed.

type archiveTS struct {
	raw     []byte // the Attribute TLV
	token   []byte
	genTime time.Time
}

// archiveTimestamps returns the archive timestamps of si, oldest first.
func archiveTimestamps(si *signerInfo) ([]archiveTS, error) {
	var out []archiveTS
	for i := range si.unsignedAttrs {
		a := &si.unsignedAttrs[i]
		if !bytes.Equal(a.oid, dArchiveTS) {
			continue
		}
		tok, ok := a.single()
		if !ok {
			return nil, formatErr("archive timestamp attribute must have one value")
		}
		var sd signedData
		if err := parseSignedData(tok, &sd); err != nil || !sd.hasContent {
			return nil, formatErr("archive timestamp token")
		}
		info, err := parseTSTInfo(sd.content)
		if err != nil {
			return nil, err
		}
		out = append(out, archiveTS{raw: a.raw, token: tok, genTime: info.genTime})
	}
	slices.SortStableFunc(out, func(a, b archiveTS) int { return a.genTime.Compare(b.genTime) })
	return out, nil
}

// archiveData is the byte string an archive timestamp covers, given the archive timestamps before it.
func archiveData(sd *signedData, earlier []archiveTS) []byte {
	si := &sd.signers[0]
	var b bytes.Buffer
	b.Write(sd.eContentRaw)
	for _, c := range sd.certs {
		b.Write(c)
	}
	for _, c := range sd.crls {
		b.Write(c)
	}
	b.Write(si.signedAttrsRaw)
	b.Write(si.sigAlgRaw)
	b.Write(si.signature)
	for i := range si.unsignedAttrs {
		if !bytes.Equal(si.unsignedAttrs[i].oid, dArchiveTS) {
			b.Write(si.unsignedAttrs[i].raw)
		}
	}
	for _, a := range earlier {
		b.Write(a.raw)
	}
	return b.Bytes()
}

// AddArchiveTimestamp upgrades a B-LT (or B-LTA) signature to B-LTA by adding a mohr-archive-time-stamp
// (docs/signature-policy.md §4). Validation data for the archive TSA travels inside its token.
func AddArchiveTimestamp(ctx context.Context, der []byte, ts Timestamper) ([]byte, error) {
	sd, err := parseOne(der)
	if err != nil {
		return nil, err
	}
	prior, err := archiveTimestamps(&sd.signers[0])
	if err != nil {
		return nil, err
	}
	d := crypto.SHA256.New()
	d.Write(archiveData(sd, prior))
	tok, err := ts.Timestamp(ctx, crypto.SHA256, d.Sum(nil))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTimestamp, err)
	}
	return rebuild(sd, nil, [][]byte{attribute(oidArchiveTimeStampMohr, func(b *cryptobyte.Builder) { b.AddBytes(tok) })})
}

var errArchiveOrder = errors.New("archive timestamp is older than the signature timestamp")

// checkArchive validates every archive timestamp of sd (oldest first), each over its archive data, and that none
// precedes the signature timestamp.
func (v *Verifier) checkArchive(sd *signedData, sigTS time.Time, r *Report) (SubIndication, string) {
	ats, err := archiveTimestamps(&sd.signers[0])
	if err != nil {
		return FormatFailure, err.Error()
	}
	for k, a := range ats {
		ti := TimestampInfo{Type: "archive"}
		gen, err := v.checkTimestamp(a.token, nil, archiveData(sd, ats[:k]), &ti)
		if err != nil {
			ti.Detail = err.Error()
			r.Timestamps = append(r.Timestamps, ti)
			return NoPOE, "archive timestamp not accepted: " + err.Error()
		}
		ti.Valid = true
		r.Timestamps = append(r.Timestamps, ti)
		if gen.Before(sigTS) {
			return TimestampOrderFailure, errArchiveOrder.Error()
		}
	}
	return "", ""
}
