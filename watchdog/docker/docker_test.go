package docker

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"go.uber.org/goleak"

	"github.com/pero-worker/pero-worker/internal/testenv"
	"github.com/pero-worker/pero-worker/watchdog"
	"github.com/pero-worker/pero-worker/watchdog/backendtest"
	"github.com/pero-worker/pero-worker/watchdog/internal/testimage"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testimage.Cleanup()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

func TestConformance(t *testing.T) {
	testenv.Docker(t)
	backendtest.Run(t, backendtest.Harness{
		New: func(t *testing.T, scope string) watchdog.Backend {
			b, err := New(Config{Scope: scope})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { b.Close() })
			return b
		},
		Kill:  func(id string) { _ = exec.Command("docker", "rm", "-f", "-v", id).Run() },
		Image: testimage.Probe(t),
	})
}

func TestContainerConfig(t *testing.T) {
	b, err := New(Config{Scope: "s1", Client: nopAPI{}})
	if err != nil {
		t.Fatal(err)
	}
	spec := watchdog.Spec{
		Name:        "pero-ocr-1",
		Image:       "pero/function:1",
		Env:         []string{"PERO_STAGE=ocr", "PERO_MQ_PASSWORD_FILE=/run/secrets/mq"},
		Labels:      watchdog.Labels("", "ocr", "v7", "wd1", []string{"1", "3"}, time.Unix(100, 0)),
		NanoCPUs:    1_500_000_000,
		MemoryBytes: 2 << 30,
		PidsLimit:   256,
		GPUs:        []string{"1", "3"},
		StopTimeout: 30500 * time.Millisecond,
		Network:     "host",
		Mounts: []watchdog.Mount{
			{Volume: "pero-cache", Target: "/var/cache/pero"},
			{Source: "/etc/pero/mq", Target: "/run/secrets/mq", ReadOnly: true},
		},
	}
	cfg, host := b.containerConfig(spec)
	if cfg.Image != spec.Image || !slices.Equal(cfg.Env, spec.Env) || len(cfg.Cmd) != 0 || len(cfg.Entrypoint) != 0 {
		t.Errorf("config: %+v", cfg)
	}
	if cfg.Labels[watchdog.LabelScope] != "s1" || cfg.Labels[watchdog.LabelStage] != "ocr" ||
		cfg.Labels[watchdog.LabelGPUs] != "1,3" || cfg.Labels[watchdog.LabelConfigVersion] != "v7" {
		t.Errorf("labels: %v", cfg.Labels)
	}
	if cfg.StopTimeout == nil || *cfg.StopTimeout != 31 {
		t.Errorf("stop timeout: %v", cfg.StopTimeout)
	}
	if host.RestartPolicy.Name != container.RestartPolicyDisabled {
		t.Errorf("restart policy: %+v", host.RestartPolicy)
	}
	if host.NanoCPUs != spec.NanoCPUs || host.Memory != spec.MemoryBytes || host.MemorySwap != spec.MemoryBytes ||
		host.PidsLimit == nil || *host.PidsLimit != 256 {
		t.Errorf("limits: cpus %d memory %d swap %d pids %v", host.NanoCPUs, host.Memory, host.MemorySwap, host.PidsLimit)
	}
	if host.NetworkMode != "host" {
		t.Errorf("network: %q", host.NetworkMode)
	}
	if len(host.DeviceRequests) != 1 || !slices.Equal(host.DeviceRequests[0].DeviceIDs, []string{"1", "3"}) ||
		host.DeviceRequests[0].Driver != "nvidia" || host.DeviceRequests[0].Count != 0 {
		t.Errorf("device requests: %+v", host.DeviceRequests)
	}
	want := []mount.Mount{
		{Type: mount.TypeVolume, Source: "pero-cache", Target: "/var/cache/pero"},
		{Type: mount.TypeBind, Source: "/etc/pero/mq", Target: "/run/secrets/mq", ReadOnly: true},
	}
	if !slices.EqualFunc(host.Mounts, want, func(a, b mount.Mount) bool {
		return a.Type == b.Type && a.Source == b.Source && a.Target == b.Target && a.ReadOnly == b.ReadOnly
	}) {
		t.Errorf("mounts: %+v", host.Mounts)
	}
	if !slices.Contains(host.CapDrop, "ALL") || !slices.Contains(host.SecurityOpt, "no-new-privileges") {
		t.Errorf("hardening: cap drop %v security %v", host.CapDrop, host.SecurityOpt)
	}

	// No limits (the default memory limit), no GPUs, a named network.
	cfg, host = b.containerConfig(watchdog.Spec{Name: "x", Image: "i", Network: "pero-net"})
	if host.PidsLimit != nil || host.Memory != DefaultMemory || host.MemorySwap != DefaultMemory || host.DeviceRequests != nil ||
		host.NetworkMode != "pero-net" || cfg.StopTimeout != nil {
		t.Errorf("defaults: %+v %+v", cfg, host)
	}
}

// nopAPI satisfies API for tests that never call it.
type nopAPI struct{ API }
