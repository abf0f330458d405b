package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// clusterAlive runs scripts/cluster.sh's alive function on pid and match and reports its verdict.
func clusterAlive(t *testing.T, pid int, match string) bool {
	t.Helper()
	script, err := os.ReadFile(filepath.Join("..", "..", "scripts", "cluster.sh"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(script)
	start := strings.Index(s, "\nalive() {")
	end := strings.Index(s[start+1:], "\n}\n")
	if start < 0 || end < 0 {
		t.Fatal("cluster.sh has no alive function")
	}
	fn := s[start+1 : start+1+end+2]
	err = exec.Command("bash", "-c", fn+"\nalive \"$1\" \"$2\"", "alive", strconv.Itoa(pid), match).Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatal(err)
	}
	return err == nil
}

// TestClusterAlive: cluster.sh restarts a node unless its recorded process runs. A zombie, a process that is
// gone and a process that now has the node's PID but is another program are not the node (the failure suite's
// "SIGKILL node2, restart it" once left node2 dead: the killed node, reaped between two checks, counted as
// alive).
func TestClusterAlive(t *testing.T) {
	marker := "--data-dir /tmp/mohr-alive-" + strconv.Itoa(os.Getpid()) + " "
	live := exec.Command("bash", "-c", "sleep 60; exit # "+marker) // bash stays: its command line holds the marker
	if err := live.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { live.Process.Kill(); live.Wait() }()
	if !clusterAlive(t, live.Process.Pid, marker) {
		t.Error("a running node process is not alive")
	}
	if clusterAlive(t, live.Process.Pid, "--data-dir /tmp/another-node ") {
		t.Error("a process with another command line (a reused PID) counts as the node")
	}

	dead := exec.Command("bash", "-c", "exit 0 # "+marker)
	if err := dead.Start(); err != nil {
		t.Fatal(err)
	}
	pid := dead.Process.Pid
	// Not waited for: it stays a zombie until Wait.
	if !waitFor(time.Minute, func() bool {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		return err == nil && strings.Contains(string(b), ") Z ")
	}) {
		t.Fatal("the child did not become a zombie")
	}
	if clusterAlive(t, pid, "") || clusterAlive(t, pid, marker) {
		t.Error("a zombie counts as alive")
	}
	dead.Wait()
	if clusterAlive(t, pid, "") {
		t.Error("a reaped process counts as alive")
	}
	if clusterAlive(t, 0, "") || clusterAlive(t, -1, "") {
		t.Error("no PID counts as alive")
	}
}
