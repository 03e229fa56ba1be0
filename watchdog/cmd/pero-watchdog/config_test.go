package main

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pero-worker/pero-worker/watchdog"
)

func TestParseDefaults(t *testing.T) {
	o, err := parse(nil, []string{"PERO_DEFAULT_IMAGE=pero/function:1"})
	if err != nil {
		t.Fatal(err)
	}
	want := options{
		zookeeper: []string{"127.0.0.1:2181"}, zkRoot: "/pero", sessionTimeout: 10 * time.Second,
		connectTimeout: 30 * time.Second, vhost: "pero", scope: "/pero", backend: "docker",
		poll: time.Second, targetDrain: 30 * time.Second, aging: 10 * time.Second, quickExit: 30 * time.Second,
		backoffBase: 2 * time.Second, backoffMax: 5 * time.Minute, gpuShare: 1, defaultImage: "pero/function:1",
		network: "host", cacheVolume: "pero-model-cache", cacheDir: "/var/cache/pero", pidsLimit: 1024,
		stopTimeout: watchdog.DefaultStopTimeout, runnerSecrets: map[string]string{}, swarmGPUKind: "NVIDIA-GPU",
		metricsAddr: ":9464", logFormat: "json",
	}
	if !equalOptions(o, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", o, want)
	}
}

func equalOptions(a, b options) bool {
	if !slices.Equal(a.zookeeper, b.zookeeper) || !slices.Equal(a.gpus, b.gpus) ||
		!slices.Equal(a.allowedImages, b.allowedImages) || !slices.Equal(a.runnerEnv, b.runnerEnv) ||
		len(a.runnerSecrets) != len(b.runnerSecrets) {
		return false
	}
	for k, v := range a.runnerSecrets {
		if b.runnerSecrets[k] != v {
			return false
		}
	}
	a.zookeeper, a.gpus, a.allowedImages, a.runnerEnv, a.runnerSecrets = nil, nil, nil, nil, nil
	b.zookeeper, b.gpus, b.allowedImages, b.runnerEnv, b.runnerSecrets = nil, nil, nil, nil, nil
	return reflect.DeepEqual(a, b)
}

func TestParse(t *testing.T) {
	base := []string{"PERO_ALLOWED_IMAGES=pero/*:*"}
	tests := []struct {
		name  string
		args  []string
		env   []string
		check func(t *testing.T, o options)
		err   []string // substrings the error must contain; nil means no error
	}{
		{name: "env sets", env: []string{"PERO_ZOOKEEPER=zk1:2181, zk2:2181", "PERO_ZK_ROOT=/x/pero",
			"PERO_POLL_INTERVAL=500ms", "PERO_GPUS=0,1", "PERO_CPU_SLOTS=8", "PERO_BACKEND=swarm",
			"PERO_RUNNER_ENV=LOG_LEVEL=debug,PERO_BATCH_WAIT=10ms", "PERO_CACHE_VOLUME=none", "PERO_METRICS_ADDR="},
			check: func(t *testing.T, o options) {
				if !slices.Equal(o.zookeeper, []string{"zk1:2181", "zk2:2181"}) || o.zkRoot != "/x/pero" ||
					o.scope != "/x/pero" || o.poll != 500*time.Millisecond || !slices.Equal(o.gpus, []string{"0", "1"}) ||
					o.cpuSlots != 8 || o.backend != "swarm" || o.cacheVolume != "" || o.metricsAddr != "" ||
					!slices.Equal(o.runnerEnv, []string{"LOG_LEVEL=debug", "PERO_BATCH_WAIT=10ms"}) {
					t.Errorf("%+v", o)
				}
			}},
		{name: "flag beats env", args: []string{"--poll-interval", "2s", "--gpus", "3", "--id", "wd-9"},
			env: []string{"PERO_POLL_INTERVAL=500ms", "PERO_GPUS=0,1", "PERO_WATCHDOG_ID=x"},
			check: func(t *testing.T, o options) {
				if o.poll != 2*time.Second || !slices.Equal(o.gpus, []string{"3"}) || o.id != "wd-9" {
					t.Errorf("%+v", o)
				}
			}},
		{name: "runner secrets", args: []string{"--runner-secret", "mq_password=/etc/pero/mq", "--runner-secret",
			"mq_ca=/etc/pero/ca.pem"},
			check: func(t *testing.T, o options) {
				if o.runnerSecrets["mq_password"] != "/etc/pero/mq" || o.runnerSecrets["mq_ca"] != "/etc/pero/ca.pem" {
					t.Errorf("%+v", o.runnerSecrets)
				}
			}},
		{name: "bad duration names the variable", env: []string{"PERO_POLL_INTERVAL=soon"},
			err: []string{"PERO_POLL_INTERVAL", `"soon"`}},
		{name: "bad flag", args: []string{"--poll-interval", "x"}, err: []string{"poll-interval"}},
		{name: "zero poll", args: []string{"--poll-interval", "0s"}, err: []string{"--poll-interval (PERO_POLL_INTERVAL): must be positive"}},
		{name: "backend", env: []string{"PERO_BACKEND=k8s"}, err: []string{"--backend (PERO_BACKEND)", `"k8s"`}},
		{name: "nothing launchable", env: []string{"PERO_ALLOWED_IMAGES="}, err: []string{"--allowed-images", "--default-image"}},
		{name: "bad pattern", args: []string{"--allowed-images", "[x"}, err: []string{"--allowed-images", `"[x"`}},
		{name: "secrets", args: []string{"--runner-secret", "root_password=/x", "--runner-secret", "mq_password=rel",
			"--runner-secret", "nope"}, err: []string{`unknown name "root_password"`, "must be absolute", `"nope" is not NAME=HOST_PATH`}},
		{name: "several problems together", env: []string{"PERO_GPU_SHARE=0", "PERO_CPU_SLOTS=-2", "LOG_LEVEL=loud",
			"LOG_FORMAT=xml", "PERO_ZK_ROOT=pero"},
			err: []string{"--gpu-share", "--cpu-slots", "--log-level", "--log-format", "--zk-root"}},
		{name: "backoff order", args: []string{"--backoff-base", "10s", "--backoff-max", "5s"}, err: []string{"--backoff-max"}},
		{name: "runner env", args: []string{"--runner-env", "NOEQUALS"}, err: []string{"--runner-env", `"NOEQUALS"`}},
		{name: "stray argument", args: []string{"extra"}, err: []string{"unexpected arguments: extra"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parse(tc.args, append(slices.Clone(base), tc.env...))
			if tc.err == nil {
				if err != nil {
					t.Fatal(err)
				}
				tc.check(t, o)
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tc.err)
			}
			for _, want := range tc.err {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
		})
	}
}

func TestRunnerEnv(t *testing.T) {
	o, err := parse([]string{"--runner-secret", "mq_password=/h/mq", "--runner-secret", "mq_ca=/h/ca.pem",
		"--runner-env", "LOG_LEVEL=debug", "--zookeeper", "zk:2181", "--zk-root", "/p"},
		[]string{"PERO_DEFAULT_IMAGE=i"})
	if err != nil {
		t.Fatal(err)
	}
	getenv := func(k string) string { return map[string]string{"PERO_MQ_TLS": "true"}[k] }
	env, mounts := runnerEnv(o, credentials{mqUser: "u", mqPassword: "mq-secret", ftpUser: "f", ftpPassword: "ftp-secret",
		zkAuth: "z:zk-secret"}, getenv)
	for _, want := range []string{"PERO_ZOOKEEPER=zk:2181", "PERO_ZK_ROOT=/p", "PERO_MQ_VHOST=pero", "PERO_MQ_USER=u",
		"PERO_MQ_PASSWORD_FILE=/run/secrets/pero/mq_password", "PERO_MQ_CA_FILE=/run/secrets/pero/mq_ca",
		"PERO_FTP_USER=f", "PERO_FTP_PASSWORD=ftp-secret", "PERO_ZK_AUTH=z:zk-secret", "PERO_MQ_TLS=true"} {
		if !slices.Contains(env, want) {
			t.Errorf("env lacks %q: %v", want, env)
		}
	}
	if env[len(env)-1] != "LOG_LEVEL=debug" {
		t.Errorf("--runner-env must come last: %v", env)
	}
	if slices.ContainsFunc(env, func(kv string) bool { return strings.Contains(kv, "mq-secret") }) {
		t.Errorf("the mq password given as a file also went into the environment: %v", env)
	}
	want := []watchdog.Mount{
		{Source: "/h/mq", Target: "/run/secrets/pero/mq_password", ReadOnly: true},
		{Source: "/h/ca.pem", Target: "/run/secrets/pero/mq_ca", ReadOnly: true},
	}
	if !slices.Equal(mounts, want) {
		t.Errorf("mounts %+v, want %+v", mounts, want)
	}
}

func TestRunExitCodes(t *testing.T) {
	var out, errs strings.Builder
	if code := run([]string{"--help"}, nil, &out, &errs); code != exitOK || !strings.Contains(out.String(), "--allowed-images") {
		t.Errorf("--help: exit %d, %q", code, out.String())
	}
	out.Reset()
	if code := run([]string{"--backend", "nomad"}, []string{"PERO_DEFAULT_IMAGE=i"}, &out, &errs); code != exitUsage ||
		!strings.Contains(errs.String(), "--backend") {
		t.Errorf("bad flag: exit %d, %q", code, errs.String())
	}
	errs.Reset()
	// Nothing listens on port 1: the service is unavailable.
	code := run([]string{"--zookeeper", "127.0.0.1:1", "--connect-timeout", "300ms", "--metrics-addr", ""},
		[]string{"PERO_DEFAULT_IMAGE=i", "LOG_FORMAT=text"}, &out, &errs)
	if code != exitUnavailable || !strings.Contains(errs.String(), "ZooKeeper") {
		t.Errorf("unreachable ZooKeeper: exit %d, %q", code, errs.String())
	}
}
