package virtualcard

import (
	"bytes"
	"crypto/sha256"
	"time"

	"github.com/mohr-hix/mohr/cardreader/internal/cardfmt"
	"github.com/mohr-hix/mohr/cardreader/internal/tlv"
)

// Status words (ISO/IEC 7816-4 §5.6).
const (
	swOK            = 0x9000
	swEOF           = 0x6282
	swWrongLength   = 0x6700
	swLastChain     = 0x6883
	swSecurity      = 0x6982
	swBlocked       = 0x6983
	swConditions    = 0x6985
	swNoEF          = 0x6986
	swIncorrectData = 0x6A80
	swNotFound      = 0x6A82
	swNoSpace       = 0x6A84
	swP1P2          = 0x6A86
	swRefNotFound   = 0x6A88
	swWrongP1P2     = 0x6B00
	swINS           = 0x6D00
	swCLA           = 0x6E00
)

const (
	maxChain = 8 * 1024
	maxEF    = 4 * 1024
)

type command struct {
	cla, ins, p1, p2 byte
	data             []byte
	ne               int
	extended         bool
}

// parseCommand decodes cases 1 to 4 of ISO/IEC 7816-4 §5.1, short and extended.
func parseCommand(b []byte) (command, bool) {
	if len(b) < 4 {
		return command{}, false
	}
	c := command{cla: b[0], ins: b[1], p1: b[2], p2: b[3]}
	body := b[4:]
	switch {
	case len(body) == 0:
	case len(body) == 1:
		c.ne = int(body[0])
		if c.ne == 0 {
			c.ne = 256
		}
	case body[0] == 0 && len(body) >= 3:
		c.extended = true
		if len(body) == 3 {
			c.ne = int(body[1])<<8 | int(body[2])
			if c.ne == 0 {
				c.ne = 65536
			}
			break
		}
		nc := int(body[1])<<8 | int(body[2])
		if nc == 0 {
			return command{}, false
		}
		rest := body[3:]
		switch len(rest) {
		case nc:
		case nc + 2:
			c.ne = int(rest[nc])<<8 | int(rest[nc+1])
			if c.ne == 0 {
				c.ne = 65536
			}
		default:
			return command{}, false
		}
		c.data = rest[:nc]
	default:
		nc := int(body[0])
		rest := body[1:]
		switch len(rest) {
		case nc:
		case nc + 1:
			c.ne = int(rest[nc])
			if c.ne == 0 {
				c.ne = 256
			}
		default:
			return command{}, false
		}
		c.data = rest[:nc]
	}
	return c, true
}

func sw(code uint16) []byte { return []byte{byte(code >> 8), byte(code)} }

// Process executes one command APDU and returns the response APDU. It never panics on malformed input.
func (c *Card) Process(apdu []byte) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ins byte
	if len(apdu) > 1 {
		ins = apdu[1]
	}
	start := time.Now()
	resp := c.process(apdu)
	s := c.stats[ins]
	s.Count++
	s.Total += time.Since(start)
	c.stats[ins] = s
	return resp
}

func (c *Card) process(apdu []byte) []byte {
	cmd, ok := parseCommand(apdu)
	if !ok {
		c.chain, c.pending = nil, nil
		return sw(swWrongLength)
	}
	if cmd.extended && !c.cfg.Extended {
		return sw(swWrongLength)
	}
	if cmd.cla&^0x10 != 0 {
		return sw(swCLA)
	}
	if cmd.ins == 0xC0 { // GET RESPONSE, ISO/IEC 7816-4 §7.6.1
		if c.pending == nil {
			return sw(swConditions)
		}
		data := c.pending
		c.pending = nil
		return c.respond(data, c.pendSW, cmd.ne)
	}
	c.pending = nil
	hdr := [3]byte{cmd.ins, cmd.p1, cmd.p2}
	if cmd.cla&0x10 != 0 { // command chaining, ISO/IEC 7816-4 §5.1.1.1
		if c.chain != nil && c.chainHdr != hdr {
			c.chain = nil
			return sw(swLastChain)
		}
		if len(c.chain)+len(cmd.data) > maxChain {
			c.chain = nil
			return sw(swWrongLength)
		}
		c.chainHdr = hdr
		c.chain = append(c.chain, cmd.data...)
		if c.chain == nil {
			c.chain = []byte{}
		}
		return sw(swOK)
	}
	if c.chain != nil {
		if c.chainHdr != hdr {
			c.chain = nil
			return sw(swLastChain)
		}
		cmd.data = append(c.chain, cmd.data...)
		c.chain = nil
	}
	data, code := c.dispatch(cmd)
	return c.respond(data, code, cmd.ne)
}

// respond returns at most ne bytes of data; the rest waits for GET RESPONSE behind 61xx.
func (c *Card) respond(data []byte, code uint16, ne int) []byte {
	if len(data) == 0 {
		return sw(code)
	}
	if len(data) <= ne {
		return append(append([]byte(nil), data...), sw(code)...)
	}
	c.pending = data[ne:]
	c.pendSW = code
	more := min(len(c.pending), 256)
	return append(append([]byte(nil), data[:ne]...), 0x61, byte(more))
}

func (c *Card) dispatch(cmd command) ([]byte, uint16) {
	switch cmd.ins {
	case 0xA4:
		return c.doSelect(cmd)
	case 0x20:
		return c.doVerify(cmd)
	}
	if !c.selected {
		return nil, swConditions
	}
	piv := c.st.Profile == ProfilePIV
	switch {
	case cmd.ins == 0xB0 && !piv:
		return c.doRead(cmd)
	case cmd.ins == 0xD6 && c.st.Profile == ProfileCouncil:
		return c.doUpdate(cmd)
	case cmd.ins == 0x22 && c.st.Profile == ProfileCouncil:
		return c.doMSE(cmd)
	case cmd.ins == 0x2A && c.st.Profile == ProfileCouncil:
		return c.doPSO(cmd)
	case cmd.ins == 0x88 && !piv:
		return c.doInternalAuth(cmd)
	case cmd.ins == 0x47 && c.st.Profile == ProfileCouncil:
		return c.doGenerate(cmd)
	case cmd.ins == 0xCA && c.st.Profile == ProfileCouncil:
		return c.doGetComfort(cmd)
	case cmd.ins == 0xCB && piv:
		return c.doGetData(cmd)
	case cmd.ins == 0x87 && piv:
		return c.doGeneralAuth(cmd)
	}
	return nil, swINS
}

func (c *Card) doSelect(cmd command) ([]byte, uint16) {
	switch cmd.p1 {
	case 0x04: // by DF name (AID); a right-truncated AID is accepted, as ISO/IEC 7816-4 §7.1.1 allows.
		aid := c.aid()
		if len(cmd.data) < 5 || !bytes.HasPrefix(aid, cmd.data) {
			// Leaving the application ends its security status, comfort signatures included.
			c.selected, c.verified, c.comfort = false, false, 0
			return nil, swNotFound
		}
		c.resetSelection()
		c.selected = true
		if c.st.Profile == ProfilePIV { // application property template, SP 800-73-4 Part 2 §3.1.1
			apt := tlv.Append(tlv.Encode(0x4F, aid[5:]), 0x79, tlv.Encode(0x4F, aid[:5]))
			apt = tlv.Append(apt, 0xAC, tlv.Append(tlv.Encode(0x80, []byte{0x11}), 0x06, []byte{0x00}))
			return tlv.Encode(0x61, apt), swOK
		}
		return tlv.Encode(0x6F, tlv.Encode(0x84, aid)), swOK
	case 0x02: // EF under the current DF
		if !c.selected || c.st.Profile == ProfilePIV {
			return nil, swNotFound
		}
		if len(cmd.data) != 2 {
			return nil, swIncorrectData
		}
		fid := uint16(cmd.data[0])<<8 | uint16(cmd.data[1])
		if _, ok := c.st.Files[fid]; !ok && !(c.st.Profile == ProfileCouncil && (fid == cardfmt.FIDSignCert || fid == cardfmt.FIDAuthCert)) {
			return nil, swNotFound
		}
		c.curEF = fid
		return nil, swOK
	}
	return nil, swP1P2
}

// resetSelection drops what a new application selection drops: current EF, security environment and
// PIN status. With comfort signatures (Config.ComfortSignatures > 0) a SELECT of the application that is
// already selected keeps the PIN status and the comfort counter: the host re-selects before every
// signature, and only leaving the application (or a reset) ends the comfort state.
func (c *Card) resetSelection() {
	c.curEF, c.seKey = 0, 0
	if c.cfg.ComfortSignatures == 0 || !c.selected {
		c.verified, c.comfort = false, 0
	}
}

func (c *Card) doRead(cmd command) ([]byte, uint16) {
	if c.curEF == 0 {
		return nil, swNoEF
	}
	if cmd.p1&0x80 != 0 {
		return nil, swP1P2
	}
	off := int(cmd.p1)<<8 | int(cmd.p2)
	f := c.st.Files[c.curEF]
	if off == 0 && len(f) == 0 {
		return nil, swEOF
	}
	if off >= len(f) {
		return nil, swWrongP1P2
	}
	if cmd.ne == 0 {
		return nil, swWrongLength
	}
	end := off + cmd.ne
	if end > len(f) {
		return append([]byte(nil), f[off:]...), swEOF
	}
	return append([]byte(nil), f[off:end]...), swOK
}

// doUpdate writes the council card's certificate files after VERIFY. A write at offset 0 starts the file
// afresh (the virtual card's files have no fixed size).
func (c *Card) doUpdate(cmd command) ([]byte, uint16) {
	if c.curEF != cardfmt.FIDSignCert && c.curEF != cardfmt.FIDAuthCert {
		return nil, swSecurity
	}
	if !c.verified {
		return nil, swSecurity
	}
	if cmd.p1&0x80 != 0 {
		return nil, swP1P2
	}
	off := int(cmd.p1)<<8 | int(cmd.p2)
	f := c.st.Files[c.curEF]
	if off == 0 {
		f = nil
	}
	if off > len(f) {
		return nil, swWrongP1P2
	}
	if off+len(cmd.data) > maxEF {
		return nil, swNoSpace
	}
	f = append(f[:off], cmd.data...)
	c.st.Files[c.curEF] = f
	if c.save() != nil {
		return nil, 0x6581
	}
	return nil, swOK
}

func (c *Card) doVerify(cmd command) ([]byte, uint16) {
	if cmd.p1 == 0xFF && cmd.p2 == c.pinRef && len(cmd.data) == 0 {
		// Logout: P1 = 'FF' resets the verification status (ISO/IEC 7816-4:2013 §11.5.6), and with it
		// the comfort counter. It spends no try.
		c.verified, c.comfort = false, 0
		return nil, swOK
	}
	if cmd.p1 != 0x00 || cmd.p2 != c.pinRef {
		return nil, swRefNotFound
	}
	if !c.selected {
		return nil, swConditions
	}
	if c.st.TriesLeft == 0 {
		return nil, swBlocked
	}
	if len(cmd.data) == 0 {
		if c.verified {
			return nil, swOK
		}
		return nil, 0x63C0 | uint16(c.st.TriesLeft)
	}
	if len(cmd.data) != 8 {
		return nil, swIncorrectData
	}
	if c.checkPIN(cmd.data) {
		c.verified = true
		c.comfort = c.cfg.ComfortSignatures
		if c.st.TriesLeft != c.st.MaxTries {
			c.st.TriesLeft = c.st.MaxTries
			if c.save() != nil {
				return nil, 0x6581
			}
		}
		return nil, swOK
	}
	c.verified, c.comfort = false, 0
	c.st.TriesLeft--
	if c.save() != nil {
		return nil, 0x6581
	}
	if c.st.TriesLeft == 0 {
		return nil, swBlocked
	}
	return nil, 0x63C0 | uint16(c.st.TriesLeft)
}

// keyRefFromCRT reads '84' (key reference) from a control reference template body.
func keyRefFromCRT(b []byte) (byte, bool) {
	v, ok, err := tlv.Find(b, 0x84)
	if err != nil || !ok || len(v) != 1 {
		return 0, false
	}
	if alg, ok, _ := tlv.Find(b, 0x80); ok && (len(alg) != 1 || alg[0] != cardfmt.AlgECDSAP256) {
		return 0, false
	}
	return v[0], true
}

func (c *Card) doMSE(cmd command) ([]byte, uint16) {
	if cmd.p1 != 0x41 || cmd.p2 != 0xB6 {
		return nil, swP1P2
	}
	ref, ok := keyRefFromCRT(cmd.data)
	if !ok {
		return nil, swIncorrectData
	}
	if c.keys[ref] == nil {
		return nil, swRefNotFound
	}
	c.seKey = ref
	return nil, swOK
}

// doPSO computes a digital signature (ISO/IEC 7816-8 PSO: COMPUTE DIGITAL SIGNATURE) over a hash of 32
// to 64 bytes with the key MSE:SET chose. Without comfort signatures the PIN is needed before every
// signature; with them, each signature spends one of the counter VERIFY set, and the last one ends the
// PIN status (6982 afterwards).
func (c *Card) doPSO(cmd command) ([]byte, uint16) {
	if cmd.p1 != 0x9E || cmd.p2 != 0x9A {
		return nil, swP1P2
	}
	if !c.verified || (c.cfg.ComfortSignatures > 0 && c.comfort == 0) {
		return nil, swSecurity
	}
	if c.seKey == 0 {
		return nil, swConditions
	}
	if len(cmd.data) < 32 || len(cmd.data) > 64 {
		return nil, swIncorrectData
	}
	if c.cfg.ComfortSignatures > 0 {
		c.comfort--
		c.verified = c.comfort > 0
	} else {
		c.verified = false
	}
	sig, ok := c.signPlain(c.seKey, cmd.data)
	if !ok {
		return nil, swRefNotFound
	}
	return sig, swOK
}

// doGetComfort is GET DATA (ISO/IEC 7816-4 §7.4.2) of the proprietary data object 'DF20' (P1-P2 =
// 'DF20'), the comfort-signature counter: 'DF20' '02' <signatures left> <signatures per VERIFY>. A card
// without comfort signatures answers 6A88 (referenced data not found).
func (c *Card) doGetComfort(cmd command) ([]byte, uint16) {
	if cmd.p1 != 0xDF || cmd.p2 != 0x20 {
		return nil, swRefNotFound
	}
	if c.cfg.ComfortSignatures == 0 {
		return nil, swRefNotFound
	}
	return tlv.Encode(0xDF20, []byte{byte(c.comfort), byte(c.cfg.ComfortSignatures)}), swOK
}

// doInternalAuth signs SHA-256 of the challenge (ISO/IEC 7816-4 §7.5.2) with the authentication key '81'.
// Both profiles need the PIN first: the council card's authentication key keeps the PIN status, the national
// ID card's is "PIN always" (each INTERNAL AUTHENTICATE spends the verification: possession and knowledge
// for every answer, the property remote signing's card factor rests on; docs/cards.md).
func (c *Card) doInternalAuth(cmd command) ([]byte, uint16) {
	if cmd.p1 != 0x00 {
		return nil, swP1P2
	}
	if len(cmd.data) < 8 || len(cmd.data) > 128 {
		return nil, swIncorrectData
	}
	if cmd.p2 != cardfmt.KeyAuth {
		return nil, swRefNotFound
	}
	if !c.verified {
		return nil, swSecurity
	}
	if c.st.Profile == ProfileNationalID {
		c.verified = false
	}
	h := sha256.Sum256(cmd.data)
	sig, ok := c.signPlain(cmd.p2, h[:])
	if !ok {
		return nil, swRefNotFound
	}
	return sig, swOK
}

// doGenerate is GENERATE ASYMMETRIC KEY PAIR (ISO/IEC 7816-8 §5.1): P1 '80' makes a new key (PIN needed),
// '81' returns the existing public key. The answer is '7F49' { '86' uncompressed point }.
func (c *Card) doGenerate(cmd command) ([]byte, uint16) {
	crt, ok, err := tlv.Find(cmd.data, 0xB6)
	if err != nil || !ok {
		return nil, swIncorrectData
	}
	ref, ok := keyRefFromCRT(crt)
	if !ok || (ref != cardfmt.KeySign && ref != cardfmt.KeyAuth) {
		return nil, swRefNotFound
	}
	switch cmd.p1 {
	case 0x80:
		if !c.verified {
			return nil, swSecurity
		}
		k, err := generateKey(c.rand)
		if err != nil {
			return nil, 0x6F00
		}
		c.keys[ref] = k
		c.setCertDER(ref, nil)
		if c.save() != nil {
			return nil, 0x6581
		}
	case 0x81:
	default:
		return nil, swP1P2
	}
	k := c.keys[ref]
	if k == nil {
		return nil, swRefNotFound
	}
	pub, err := k.PublicKey.ECDH()
	if err != nil {
		return nil, 0x6F00
	}
	return tlv.Encode(0x7F49, tlv.Encode(0x86, pub.Bytes())), swOK
}

func (c *Card) doGetData(cmd command) ([]byte, uint16) {
	if cmd.p1 != 0x3F || cmd.p2 != 0xFF {
		return nil, swP1P2
	}
	v, ok, err := tlv.Find(cmd.data, 0x5C)
	if err != nil || !ok || len(v) == 0 || len(v) > 3 {
		return nil, swIncorrectData
	}
	var tag uint32
	for _, b := range v {
		tag = tag<<8 | uint32(b)
	}
	o, ok := c.st.Objects[tag]
	if !ok {
		return nil, swNotFound
	}
	return tlv.Encode(0x53, o), swOK
}

// doGeneralAuth signs with a PIV key (SP 800-73-4 Part 2 §3.2.4): '7C' { '82' empty, '81' hash }, answer
// '7C' { '82' ASN.1 signature }. Slot 9C is "PIN always": its use clears the PIN status.
func (c *Card) doGeneralAuth(cmd command) ([]byte, uint16) {
	if cmd.p1 != 0x11 {
		return nil, swP1P2
	}
	if cmd.p2 != 0x9A && cmd.p2 != 0x9C {
		return nil, swRefNotFound
	}
	t, _, err := tlv.ReadOne(cmd.data)
	if err != nil || t.Tag != 0x7C {
		return nil, swIncorrectData
	}
	h, ok, err := tlv.Find(t.Value, 0x81)
	if err != nil || !ok || len(h) == 0 || len(h) > 64 {
		return nil, swIncorrectData
	}
	if !c.verified {
		return nil, swSecurity
	}
	if cmd.p2 == 0x9C {
		c.verified = false
	}
	sig, ok := c.signASN1(cmd.p2, h)
	if !ok {
		return nil, swRefNotFound
	}
	return tlv.Encode(0x7C, tlv.Encode(0x82, sig)), swOK
}
