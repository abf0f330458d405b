// Package cardfmt holds the numbers of Mohr's documented card profiles (docs/cards.md) that both the
// card side (virtualcard) and the host side (cardreader) need: default AIDs, file identifiers, key and
// PIN references, algorithm references and the tags of the holder-data file.
package cardfmt

// Proprietary application identifiers (ISO/IEC 7816-5: a first nibble 'F' marks an unregistered,
// proprietary AID). Deployments override them through configuration.
var (
	NationalIDAID = []byte{0xF0, 0x4D, 0x4F, 0x48, 0x52, 0x01, 0x01} // F0 "MOHR" 01 01
	CouncilAID    = []byte{0xF0, 0x4D, 0x4F, 0x48, 0x52, 0x02, 0x01} // F0 "MOHR" 02 01
	// PIVAID is the PIV card application AID with version (SP 800-73-4 Part 1 §2.2).
	PIVAID = []byte{0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x01, 0x00}
)

// File identifiers of the Mohr profiles.
const (
	FIDHolder   uint16 = 0x0101 // holder data (national ID and council card)
	FIDAuthCert uint16 = 0x0102 // authentication certificate
	FIDSignCert uint16 = 0x0103 // signing certificate (council card)
)

// Key, PIN and algorithm references.
const (
	PINRef       byte = 0x81 // local PIN reference (ISO/IEC 7816-4 §7.5.6 P2, b8 = 1: specific)
	PIVPINRef    byte = 0x80 // PIV Card Application PIN (SP 800-73-4 Part 2 §3.2.1)
	KeyAuth      byte = 0x81 // national ID / council authentication key
	KeySign      byte = 0x82 // council signing key
	AlgECDSAP256 byte = 0x11 // ECDSA on P-256 over a host-computed hash; same value as PIV's algorithm identifier
)

// Tags of the holder-data file: a template '65' (cardholder related data, ISO/IEC 7816-6) holding
// private-class primitive objects.
const (
	TagHolderTemplate uint32 = 0x65
	TagNationalCode   uint32 = 0xDF01 // 10 ASCII digits
	TagGivenName      uint32 = 0xDF02 // UTF-8
	TagFamilyName     uint32 = 0xDF03 // UTF-8
	TagBirthDate      uint32 = 0xDF04 // YYYYMMDD, Gregorian
	TagCardNumber     uint32 = 0xDF05 // ASCII
	TagExpiry         uint32 = 0xDF06 // YYYYMMDD
	TagCouncilNumber  uint32 = 0xDF11 // ASCII digits
	TagSpecialty      uint32 = 0xDF12 // UTF-8
)

// PIV data object tags (SP 800-73-4 Part 1 Table 3) and key references (Part 1 Table 4b).
const (
	PIVTagCHUID    uint32 = 0x5FC102
	PIVTagCertAuth uint32 = 0x5FC105 // 9A
	PIVTagCertSign uint32 = 0x5FC10A // 9C
	PIVTagCertKM   uint32 = 0x5FC10B // 9D
	PIVTagCertCard uint32 = 0x5FC101 // 9E
)
