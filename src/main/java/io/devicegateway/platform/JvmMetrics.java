package io.devicegateway.platform;

import java.util.ArrayList;
import java.util.List;

import jakarta.enterprise.context.ApplicationScoped;
import jakarta.enterprise.event.Observes;

import org.jboss.logging.Logger;

import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.binder.MeterBinder;
import io.micrometer.core.instrument.binder.jvm.ClassLoaderMetrics;
import io.micrometer.core.instrument.binder.jvm.JvmGcMetrics;
import io.micrometer.core.instrument.binder.jvm.JvmHeapPressureMetrics;
import io.micrometer.core.instrument.binder.jvm.JvmMemoryMetrics;
import io.micrometer.core.instrument.binder.jvm.JvmThreadMetrics;
import io.micrometer.core.instrument.binder.system.FileDescriptorMetrics;
import io.micrometer.core.instrument.binder.system.ProcessorMetrics;
import io.micrometer.core.instrument.binder.system.UptimeMetrics;
import io.quarkus.micrometer.runtime.binder.JVMInfoBinder;
import io.quarkus.runtime.ImageMode;
import io.quarkus.runtime.ShutdownEvent;
import io.quarkus.runtime.StartupEvent;
import io.vertx.core.Vertx;

/**
 * The JVM and process meters ({@code jvm_*}, {@code process_*}: the dashboard's memory, GC, threads, CPU panels), the
 * same binders Quarkus binds with {@code quarkus.micrometer.binder.jvm} / {@code .system} (both off in
 * application.properties), bound here a second after the gateway is ready ({@link AfterReady}), or
 * {@link #LATEST_MILLIS} after the start if it is not ready by then (an unready pod still reports them). Quarkus binds them while the MQTT connection and the
 * first messages are under way: ~250 classes, management beans and GC listeners on the main thread that compete
 * with the first messages for the CPU. Bound on a worker thread, never on an event loop.
 */
@ApplicationScoped
public class JvmMetrics {

    private static final Logger LOG = Logger.getLogger(JvmMetrics.class);
    static final long LATEST_MILLIS = 10_000;

    private final MeterRegistry registry;
    private final Vertx vertx;
    private final List<AutoCloseable> closeable = new ArrayList<>();
    private volatile long timer = -1;
    private volatile boolean bound;
    private volatile boolean stopped;

    JvmMetrics(MeterRegistry registry, Vertx vertx) {
        this.registry = registry;
        this.vertx = vertx;
    }

    /** The latest moment, for a gateway that is not ready by then. */
    void start(@Observes StartupEvent event) {
        timer = vertx.setTimer(LATEST_MILLIS, id -> {
            timer = -1;
            bindOffTheEventLoop();
        });
    }

    void onSettled(@Observes AfterReady.Settled settled) {
        long id = timer;
        if (id >= 0) {
            vertx.cancelTimer(id);
            timer = -1;
        }
        bindOffTheEventLoop();
    }

    private void bindOffTheEventLoop() {
        vertx.executeBlocking(() -> {
            bind();
            return null;
        }, false);
    }

    /** Binds the meters once (what Quarkus's MicrometerRecorder binds for binder.jvm and binder.system). */
    synchronized void bind() {
        if (bound || stopped) {
            return;
        }
        bound = true;
        new ClassLoaderMetrics().bindTo(registry);
        JvmHeapPressureMetrics heapPressure = new JvmHeapPressureMetrics();
        heapPressure.bindTo(registry);
        closeable.add(heapPressure);
        new JvmMemoryMetrics().bindTo(registry);
        new JvmThreadMetrics().bindTo(registry);
        new JVMInfoBinder().bindTo(registry);
        if (ImageMode.current() == ImageMode.JVM) { // as Quarkus: no GC notifications in a native executable
            JvmGcMetrics gc = new JvmGcMetrics();
            gc.bindTo(registry);
            closeable.add(gc);
        }
        for (MeterBinder binder : List.of(new UptimeMetrics(), new ProcessorMetrics(), new FileDescriptorMetrics())) {
            binder.bindTo(registry);
        }
        LOG.debug("JVM and process meters bound");
    }

    boolean bound() {
        return bound;
    }

    synchronized void stop(@Observes ShutdownEvent event) {
        stopped = true;
        long id = timer;
        if (id >= 0) {
            vertx.cancelTimer(id);
        }
        for (AutoCloseable c : closeable) {
            try {
                c.close();
            } catch (Exception e) {
                LOG.debugf("closing %s: %s", c, e);
            }
        }
    }
}
