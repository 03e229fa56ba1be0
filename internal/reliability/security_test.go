package reliability

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pero-worker/pero-worker/internal/testenv"
)

// runContainer runs the function image's runner once, as the watchdog would but in the
// foreground, and returns its output and exit code.
func (s *system) runContainer(env ...string) (string, int) {
	s.t.Helper()
	name := testenv.Unique("pero-rel-run")
	args := []string{"run", "--rm", "--name", name, "--network", "host", "--label", "pero.scope=" + s.scope}
	for _, kv := range env {
		args = append(args, "--env", kv)
	}
	ctx := ctxFor(s.t, 2*time.Minute)
	cmd := exec.CommandContext(ctx, "docker", append(args, s.image)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &ee):
		return out.String(), ee.ExitCode()
	}
	s.t.Fatalf("docker run: %v\n%s", err, out.String())
	return "", 0
}

// TestLogsAndErrorsNeverShowPasswords: the runner and the watchdog, at debug level, working and
// failing on wrong credentials, never print a password: not the right ones (the private services'
// passwords are random and distinctive, and every watchdog log of this package is checked for
// them), not the wrong ones, not the ZooKeeper digest.
func TestLogsAndErrorsNeverShowPasswords(t *testing.T) {
	t.Parallel()
	s := newSystem(t)
	out := s.output()
	stage := s.modelStage(modelArchive(t, 8<<10), 1)
	zkAuth := "pero:zk-pw-" + randomHex(8)
	wrongMQ, wrongFTP := "wrong-mq-"+randomHex(8), "wrong-ftp-"+randomHex(8)
	secrets := append(s.svc.secrets(), zkAuth, wrongMQ, wrongFTP)

	runnerEnv := []string{
		"PERO_STAGE=" + stage, "PERO_ZOOKEEPER=" + s.svc.zkAddr(), "PERO_ZK_ROOT=" + s.root, "PERO_ZK_AUTH=" + zkAuth,
		"PERO_MQ_USER=" + s.svc.user, "PERO_MQ_PASSWORD=" + s.svc.mqPassword, "PERO_MQ_VHOST=" + s.svc.vhost,
		"PERO_FTP_USER=" + s.svc.user, "PERO_FTP_PASSWORD=" + s.svc.ftpPassword,
		"PERO_IDLE_TIMEOUT=1s", "PERO_CONNECT_TIMEOUT=5s", "LOG_LEVEL=debug", "LOG_FORMAT=text",
	}
	ids := s.publish(3, stage, out)
	for _, tc := range []struct {
		name  string
		extra []string
		code  int
	}{
		{"works", nil, 0},
		{"wrong broker password", []string{"PERO_MQ_PASSWORD=" + wrongMQ}, 3},
		{"wrong file server password", []string{"PERO_FTP_PASSWORD=" + wrongFTP}, 3},
	} {
		text, code := s.runContainer(append(runnerEnv, tc.extra...)...)
		if code != tc.code {
			t.Errorf("runner, %s: exit code %d, want %d\n%s", tc.name, code, tc.code, text)
		}
		noSecrets(t, "runner output, "+tc.name, text, secrets...)
	}
	s.settle(ids, out, []string{stage}, 0, 30*time.Second)

	// The watchdog refused by the broker exits saying so, without the password it tried.
	cmd := exec.Command(binary(t, watchdogPkg))
	cmd.Env = append(s.watchdogEnv("wd-wrong"), "PERO_MQ_PASSWORD="+wrongMQ, "LOG_LEVEL=debug", "PERO_CONNECT_TIMEOUT=5s")
	text, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Errorf("watchdog with a wrong broker password: %v\n%s", err, text)
	}
	noSecrets(t, "watchdog output, wrong broker password", string(text), secrets...)

	// A working watchdog at debug level, with the ZooKeeper digest, launching runners that get
	// the credentials; its log is checked when the test ends, with the failures it logged.
	wd := s.watchdog("wd-debug", "LOG_LEVEL=debug", "PERO_ZK_AUTH="+zkAuth)
	ids = s.publish(3, stage, out)
	s.settle(ids, out, []string{stage}, 0, 60*time.Second)
	noSecrets(t, "watchdog log, debug", wd.text(), secrets...)
	if os.Getenv("PERO_TEST_LOG") == "debug" {
		t.Logf("%s", wd.text())
	}
}

// TestContainersRunHardened: a container the watchdog launched, seen by the engine and by the
// kernel: an unprivileged user, no capabilities, no way to gain privileges, a read-only root
// filesystem, memory and process limits.
func TestContainersRunHardened(t *testing.T) {
	t.Parallel()
	s := newSystem(t)
	out := s.output()
	stage := s.sleepStage(0.2, 2, 1)
	s.watchdog("wd-a")
	ids := s.publish(20, stage, out)
	var name string
	testenv.Eventually(t, 60*time.Second, "a runner consuming", func() bool {
		for n, st := range s.runners(stage) {
			if st.State == "running" {
				name = n
				return true
			}
		}
		return false
	})
	b, err := exec.Command("docker", "inspect", "--format",
		"{{.Config.User}}|{{.HostConfig.ReadonlyRootfs}}|{{.HostConfig.SecurityOpt}}|{{.HostConfig.CapDrop}}|"+
			"{{.HostConfig.Memory}}|{{.HostConfig.PidsLimit}}|{{.HostConfig.Privileged}}|{{.State.Pid}}", name).Output()
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Split(strings.TrimSpace(string(b)), "|")
	if f[0] != "65532:65532" || f[1] != "true" || f[2] != "[no-new-privileges]" || f[3] != "[ALL]" || f[4] == "0" ||
		f[5] == "<nil>" || f[5] == "0" || f[6] != "false" {
		t.Errorf("engine: user %s, read-only %s, security %s, cap drop %s, memory %s, pids %s, privileged %s",
			f[0], f[1], f[2], f[3], f[4], f[5], f[6])
	}
	status, err := os.ReadFile("/proc/" + f[7] + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Uid:\t65532\t65532\t65532\t65532", "NoNewPrivs:\t1", "CapEff:\t0000000000000000"} {
		if !strings.Contains(string(status), want) {
			t.Errorf("kernel: the runner's status lacks %q", want)
		}
	}
	s.settle(ids, out, []string{stage}, 0, 60*time.Second)
}
