package cli

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"text/tabwriter"

	"github.com/pero-worker/pero-worker/internal/rabbitmq"
	"github.com/pero-worker/pero-worker/watchdog/status"
)

func statusCommand() *Command {
	return &Command{
		Name:    "status",
		Summary: "Show per stage queued, in-progress and dead-lettered messages and rates",
		Run:     runStatus,
	}
}

const statusHelp = `For every stage: messages ready in its queue, delivered but not yet acknowledged
(being processed), consumers, the publish and acknowledge rates, and messages in its
dead-letter queue. Counts of unacknowledged messages and rates need a registered
monitoring server (pero servers add mq-monitoring HOST:15672); without one, the ready
and consumer counts come from the broker directly. CONTAINERS counts the stage's live
containers (starting, running and draining) as the leading watchdog reports them; "-" when no
watchdog leads.`

func runStatus(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "status", "status [flags]", statusHelp)
	cf := addConnFlags(fs, env)
	if err := parse(fs, args); err != nil {
		return err
	}
	st, err := cf.openZK(ctx, env)
	if err != nil {
		return err
	}
	defer st.Close()
	names, err := st.ListStages(ctx)
	if err != nil {
		return unavailable(err, "")
	}
	mgmt, err := cf.openManagement(ctx, env, st)
	if err != nil {
		return err
	}
	var mq *rabbitmq.Conn
	if mgmt == nil {
		if mq, err = cf.openMQ(ctx, env, st); err != nil {
			return err
		}
		defer mq.Close()
	}
	stats := func(q string) (rabbitmq.QueueStats, error) {
		if mgmt != nil {
			return mgmt.QueueStats(ctx, q)
		}
		info, err := mq.Inspect(ctx, q)
		return rabbitmq.QueueStats{Name: q, Ready: info.Ready, Unacked: -1, Consumers: info.Consumers,
			PublishRate: -1, AckRate: -1}, err
	}
	num := func(n int) string {
		if n < 0 {
			return "-"
		}
		return strconv.Itoa(n)
	}
	rate := func(r float64) string {
		if r < 0 {
			return "-"
		}
		return strconv.FormatFloat(r, 'f', 1, 64)
	}
	// The containers per stage come from what the leading watchdog publishes; "-" without one.
	wd, wdErr := status.Read(ctx, st.Conn(), st.Root())
	containers := func(stage string) string {
		if wdErr != nil {
			return "-"
		}
		s, ok := wd.Find(stage)
		if !ok {
			return "0"
		}
		return strconv.Itoa(s.Containers())
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "STAGE\tREADY\tUNACKED\tCONSUMERS\tIN/s\tDONE/s\tDEAD\tCONTAINERS\t")
	for _, n := range names {
		s, err := stats(n)
		if errors.Is(err, rabbitmq.ErrQueueNotFound) {
			fmt.Fprintf(tw, "%s\t(no queue)\t\t\t\t\t\t%s\t\n", n, containers(n))
			continue
		}
		if errors.Is(err, rabbitmq.ErrAuth) {
			return unavailable(err, "check PERO_MQ_USER and PERO_MQ_PASSWORD; the monitoring user needs the management tag")
		}
		if err != nil {
			return unavailable(err, "")
		}
		dead := "-"
		if d, err := stats(rabbitmq.DeadLetterQueue(n)); err == nil {
			dead = num(d.Ready)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", n, num(s.Ready), num(s.Unacked), num(s.Consumers),
			rate(s.PublishRate), rate(s.AckRate), dead, containers(n))
	}
	if len(names) == 0 {
		fmt.Fprintln(tw, "(no stages)\t\t\t\t\t\t\t\t")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	switch {
	case wdErr == nil:
		fmt.Fprintf(env.Stdout, "watchdog %s leads (%s backend), status of %s\n", wd.Watchdog, wd.Backend,
			wd.Updated.Local().Format("15:04:05"))
	case errors.Is(wdErr, status.ErrNone):
		fmt.Fprintln(env.Stdout, "no watchdog is leading: containers are not counted")
	default:
		fmt.Fprintf(env.Stdout, "watchdog status unreadable: %v\n", wdErr)
	}
	return nil
}
