package signing

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

func TestBatchNDJSONAndFiles(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	bv := &BatchVerifier{Verifier: f.verifier(t, nil), Workers: 2}
	var in bytes.Buffer
	enc := json.NewEncoder(&in)
	dir := t.TempDir()
	var paths []string
	for i := 0; i < 20; i++ {
		der := f.signBB(t, f.doc, f.physician)
		enc.Encode(ndjsonIn{Name: "doc", CMS: der})
		p := filepath.Join(dir, "d"+string(rune('a'+i))+".p7s")
		os.WriteFile(p, der, 0o644)
		paths = append(paths, p)
	}
	in.WriteString("not json\n")
	var out bytes.Buffer
	st, err := bv.VerifyNDJSON(ctx, &in, &out)
	if err != nil {
		t.Fatal(err)
	}
	if st.Total != 21 || st.Passed != 20 || st.Failed != 1 {
		t.Fatalf("stats %+v", st)
	}
	lines := 0
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		var r Report
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		lines++
	}
	if lines != 22 { // 21 results and the summary
		t.Fatalf("%d output lines", lines)
	}
	paths = append(paths, filepath.Join(dir, "missing.p7s"))
	n := 0
	st, err = bv.VerifyFiles(ctx, paths, func(*Report) { n++ })
	if err != nil || st.Passed != 20 || st.Total != 21 || n != 21 {
		t.Fatalf("files: %+v %v", st, err)
	}
}
