package main

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/internal/testenv"
)

// TestAuditVerifyCrossChecksCertificates: audit verify works right after ca init, passes while the table and the
// log agree, and fails (exit 3, naming the serial) once a certificate's status is changed directly in the
// database, on SQLite and on PostgreSQL.
func TestAuditVerifyCrossChecksCertificates(t *testing.T) {
	for _, driver := range []string{"sqlite", "postgres"} {
		t.Run(driver, func(t *testing.T) {
			dd := t.TempDir()
			var exec1 func(q string)
			switch driver {
			case "sqlite":
				exec1 = func(q string) {
					db, err := sql.Open("sqlite", filepath.Join(dd, "mohr.db"))
					if err != nil {
						t.Fatal(err)
					}
					defer db.Close()
					if _, err := db.Exec(q); err != nil {
						t.Fatal(err)
					}
				}
			case "postgres":
				dsn := testenv.PostgresDSN(t)
				name := "mohr_audit_" + fmt.Sprint(time.Now().UnixNano())
				if out, err := exec.Command("psql", dsn, "-c", "CREATE DATABASE "+name).CombinedOutput(); err != nil {
					t.Fatalf("create database: %v %s", err, out)
				}
				t.Cleanup(func() { exec.Command("psql", dsn, "-c", "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)").Run() })
				u, _ := url.Parse(dsn)
				u.Path = "/" + name
				os.WriteFile(filepath.Join(dd, "mohr.yaml"), []byte("database:\n  driver: postgres\n  dsn: "+u.String()+"\n"), 0o600)
				exec1 = func(q string) {
					if out, err := exec.Command("psql", u.String(), "-v", "ON_ERROR_STOP=1", "-c", q).CombinedOutput(); err != nil {
						t.Fatalf("psql: %v %s", err, out)
					}
				}
			}
			mustMohr(t, dd, "ca", "init", "--dev")
			if out := mustMohr(t, dd, "audit", "verify"); !strings.Contains(out, "audit log intact") {
				t.Fatalf("audit verify right after ca init: %s", out)
			}
			dir := t.TempDir()
			for _, n := range []string{"tsa1", "tsa2"} {
				mustMohr(t, dd, "cert", "issue", "--profile", "tsa", "--csr", writeCSR(t, dir, n, newP256(t)), "--name", n)
			}
			var list []struct{ Serial string }
			json.Unmarshal([]byte(mustMohr(t, dd, "cert", "list", "--json")), &list)
			if len(list) != 2 {
				t.Fatalf("list: %+v", list)
			}
			mustMohr(t, dd, "cert", "revoke", list[0].Serial, "--reason", "keyCompromise")
			mustMohr(t, dd, "audit", "checkpoint")
			if out := mustMohr(t, dd, "audit", "verify"); !strings.Contains(out, "certificate table matches the audit log: 2 certificates") {
				t.Fatalf("audit verify: %s", out)
			}
			// Un-revoke a certificate behind Mohr's back: the log is intact, the table is not.
			exec1(fmt.Sprintf("UPDATE certificates SET status = 'issued', revocation_reason = 0 WHERE serial = '%s'", list[0].Serial))
			out, errOut, code := mohr(t, dd, "audit", "verify")
			if code != exitAuditBad || !strings.Contains(errOut, list[0].Serial) || !strings.Contains(errOut, "the audit log says revoked") {
				t.Fatalf("tampered status: exit %d\n%s\n%s", code, out, errOut)
			}
			// Put it back: verify passes again; then revoke the other one directly.
			exec1(fmt.Sprintf("UPDATE certificates SET status = 'revoked', revocation_reason = 1 WHERE serial = '%s'", list[0].Serial))
			mustMohr(t, dd, "audit", "verify")
			exec1(fmt.Sprintf("UPDATE certificates SET status = 'revoked', revocation_reason = 1 WHERE serial = '%s'", list[1].Serial))
			if _, errOut, code := mohr(t, dd, "audit", "verify"); code != exitAuditBad || !strings.Contains(errOut, list[1].Serial) {
				t.Fatalf("directly revoked: exit %d %s", code, errOut)
			}
		})
	}
}
