package swarm

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pero-worker/pero-worker/internal/testenv"
	"github.com/pero-worker/pero-worker/watchdog"
	"github.com/pero-worker/pero-worker/watchdog/backendtest"
	"github.com/pero-worker/pero-worker/watchdog/internal/testimage"
	"github.com/pero-worker/pero-worker/watchdog/internal/testswarm"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testswarm.Leave()
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
	testswarm.Ensure(t)
	backendtest.Run(t, backendtest.Harness{
		New: func(t *testing.T, scope string) watchdog.Backend {
			b, err := New(Config{Scope: scope})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { b.Close() })
			return b
		},
		Kill:    func(id string) { _ = exec.Command("docker", "service", "rm", id).Run() },
		Image:   testimage.Probe(t),
		Timeout: 90 * time.Second,
	})
}

func TestServiceSpec(t *testing.T) {
	b, err := New(Config{Scope: "s1", Client: nopAPI{}})
	if err != nil {
		t.Fatal(err)
	}
	spec := watchdog.Spec{
		Name: "pero-ocr-1", Image: "pero/function:1", Env: []string{"PERO_STAGE=ocr"},
		Labels:   watchdog.Labels("", "ocr", "v7", "wd1", []string{"0", "1"}, time.Unix(100, 0)),
		NanoCPUs: 2e9, MemoryBytes: 1 << 30, PidsLimit: 128, GPUs: []string{"0", "1"},
		StopTimeout: 35 * time.Second, Network: "host",
		Mounts: []watchdog.Mount{{Volume: "cache", Target: "/var/cache/pero"}, {Source: "/s/pw", Target: "/run/secrets/pw", ReadOnly: true}},
	}
	s := b.serviceSpec(spec)
	if s.Annotations.Name != spec.Name || s.Annotations.Labels[watchdog.LabelScope] != "s1" ||
		s.TaskTemplate.ContainerSpec.Labels[watchdog.LabelStage] != "ocr" {
		t.Errorf("annotations: %+v", s.Annotations)
	}
	job := s.Mode.ReplicatedJob
	if job == nil || *job.MaxConcurrent != 1 || *job.TotalCompletions != 1 || s.Mode.Replicated != nil {
		t.Errorf("mode: %+v", s.Mode)
	}
	tt := s.TaskTemplate
	if tt.RestartPolicy == nil || tt.RestartPolicy.Condition != "none" {
		t.Errorf("restart policy: %+v", tt.RestartPolicy)
	}
	if l := tt.Resources.Limits; l.NanoCPUs != 2e9 || l.MemoryBytes != 1<<30 || l.Pids != 128 {
		t.Errorf("limits: %+v", l)
	}
	r := tt.Resources.Reservations
	if r == nil || len(r.GenericResources) != 1 || r.GenericResources[0].DiscreteResourceSpec.Kind != "NVIDIA-GPU" ||
		r.GenericResources[0].DiscreteResourceSpec.Value != 2 {
		t.Errorf("reservations: %+v", r)
	}
	if len(tt.Networks) != 1 || tt.Networks[0].Target != "host" {
		t.Errorf("networks: %+v", tt.Networks)
	}
	if *tt.ContainerSpec.StopGracePeriod != 35*time.Second || len(tt.ContainerSpec.Mounts) != 3 || // and /tmp
		tt.ContainerSpec.Mounts[1].Type != "bind" || !tt.ContainerSpec.Mounts[1].ReadOnly {
		t.Errorf("container spec: %+v", tt.ContainerSpec)
	}
	if len(tt.ContainerSpec.Args) != 0 || len(tt.ContainerSpec.Command) != 0 {
		t.Errorf("argv set: %v %v", tt.ContainerSpec.Command, tt.ContainerSpec.Args)
	}
	if strings.Join(tt.ContainerSpec.Env, " ") != "PERO_STAGE=ocr" {
		t.Errorf("env: %v", tt.ContainerSpec.Env)
	}
}

type nopAPI struct{ API }
