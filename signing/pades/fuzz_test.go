package pades

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzSignatures feeds PDFs to the extraction side (Signatures, ReadDSS, CheckAppended), which reads untrusted
// files. Properties: no panic; every signature returned covers exactly the file without its /Contents gap, and
// its CMS is the DER prefix of its /Contents; a file CheckAppended accepts ends in an end-of-file marker.
// Seeds: testdata/fuzz/FuzzSignatures (a B-LT printout and truncations; rewrite with MOHR_UPDATE_FUZZ_SEEDS=1).
func FuzzSignatures(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "seeds", "*.pdf"))
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		sigs, err := Signatures(b)
		if err != nil {
			return
		}
		for _, s := range sigs {
			br := s.ByteRange
			if int64(len(s.Signed)) != br[1]+br[3] || !bytes.Equal(s.Signed[:br[1]], b[:br[1]]) ||
				!bytes.Equal(s.Signed[br[1]:], b[br[2]:br[2]+br[3]]) {
				t.Fatalf("signed bytes are not the byte ranges %v", br)
			}
			if !bytes.HasPrefix(s.Contents, s.CMS) {
				t.Fatal("CMS is not a prefix of /Contents")
			}
			if CheckAppended(b, br[2]+br[3]) == nil && br[2]+br[3] != int64(len(b)) && !eofRE.Match(b) {
				t.Fatal("an update without an end-of-file marker was accepted")
			}
		}
	})
}

// TestUpdateFuzzSeeds writes the fuzz seeds: a B-LT printout, and its signed revision alone.
func TestUpdateFuzzSeeds(t *testing.T) {
	if os.Getenv("MOHR_UPDATE_FUZZ_SEEDS") != "1" {
		t.Skip("set MOHR_UPDATE_FUZZ_SEEDS=1 to rewrite testdata/seeds")
	}
	f := setup(t)
	blt := f.sign(t, LevelBLT)
	sigs, _ := Signatures(blt)
	end := sigs[0].ByteRange[2] + sigs[0].ByteRange[3]
	os.MkdirAll(filepath.Join("testdata", "seeds"), 0o755)
	os.WriteFile(filepath.Join("testdata", "seeds", "blt.pdf"), blt, 0o644)
	os.WriteFile(filepath.Join("testdata", "seeds", "bt-revision.pdf"), blt[:end], 0o644)
}
