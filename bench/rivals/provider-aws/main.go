// Command provider-aws runs Crossplane's provider-aws controllers (crossplane-contrib, pinned in
// go.mod) for kumo's benchmark, standalone against a cluster that has the provider's CRDs.
//
// It exists because upstream's cmd/provider leaves the controller-runtime metrics server at its
// default ":8080" (every interface) with no flag to move it, and every server on kumo's test bed
// binds loopback only. Everything else keeps upstream's defaults and flag names, so the benchmark
// measures the provider as its users run it: --poll (1m), --sync (1h), --max-reconcile-rate (10).
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	xpcontroller "github.com/crossplane/crossplane-runtime/pkg/controller"
	"github.com/crossplane/crossplane-runtime/pkg/feature"
	"github.com/crossplane/crossplane-runtime/pkg/logging"
	"github.com/crossplane/crossplane-runtime/pkg/ratelimiter"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/crossplane-contrib/provider-aws/apis"
	"github.com/crossplane-contrib/provider-aws/pkg/controller"
	"github.com/crossplane-contrib/provider-aws/pkg/utils/metrics"
)

func main() {
	debug := flag.Bool("debug", false, "log at debug level, controller-runtime included")
	sync := flag.Duration("sync", time.Hour, "how often the informer cache resyncs every resource")
	poll := flag.Duration("poll", time.Minute, "how often each resource is observed for drift")
	rate := flag.Int("max-reconcile-rate", 10, "reconciles per second, and concurrent reconciles per controller")
	metricsAddress := flag.String("metrics-bind-address", "127.0.0.1:8080", "where the Prometheus metrics are served")
	flag.Parse()

	if err := run(*debug, *sync, *poll, *rate, *metricsAddress); err != nil {
		fmt.Fprintln(os.Stderr, "provider-aws:", err)
		os.Exit(1)
	}
}

func run(debug bool, sync, poll time.Duration, rate int, metricsAddress string) error {
	logger := zap.New(zap.UseDevMode(debug))
	if debug {
		ctrl.SetLogger(logger)
	} else {
		// As upstream: controller-runtime's own info lines would swamp the provider's.
		ctrl.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	}

	restConfig, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("API server config: %w", err)
	}
	manager, err := ctrl.NewManager(restConfig, ctrl.Options{
		Cache:   cache.Options{SyncPeriod: &sync},
		Metrics: metricsserver.Options{BindAddress: metricsAddress},
	})
	if err != nil {
		return fmt.Errorf("controller manager: %w", err)
	}
	if err := apis.AddToScheme(manager.GetScheme()); err != nil {
		return fmt.Errorf("provider-aws API types: %w", err)
	}
	if err := metrics.SetupMetrics(); err != nil {
		return fmt.Errorf("AWS call metrics: %w", err)
	}
	options := xpcontroller.Options{
		Logger:                  logging.NewLogrLogger(logger.WithName("provider-aws")),
		MaxConcurrentReconciles: rate,
		PollInterval:            poll,
		GlobalRateLimiter:       ratelimiter.NewGlobal(rate),
		Features:                &feature.Flags{},
	}
	if err := controller.Setup(manager, options); err != nil {
		return fmt.Errorf("provider-aws controllers: %w", err)
	}
	return manager.Start(ctrl.SetupSignalHandler())
}
