package io.devicegateway.platform;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

import io.micrometer.core.instrument.simple.SimpleMeterRegistry;

/** The deferred JVM and process meters: the ones the dashboard queries, bound once, nothing after shutdown. */
class JvmMetricsTest {

    @Test
    void bindsTheDashboardsJvmAndProcessMetersOnce() {
        SimpleMeterRegistry registry = new SimpleMeterRegistry();
        JvmMetrics metrics = new JvmMetrics(registry, null);
        assertFalse(metrics.bound());
        metrics.bind();
        assertTrue(metrics.bound());
        // jvm_memory_used_bytes, process_cpu_usage, jvm_threads_live_threads, jvm_classes_loaded_classes, GC
        assertNotNull(registry.find("jvm.memory.used").gauge());
        assertNotNull(registry.find("process.cpu.usage").gauge());
        assertNotNull(registry.find("jvm.threads.live").gauge());
        assertNotNull(registry.find("jvm.classes.loaded").gauge());
        assertNotNull(registry.find("jvm.gc.memory.allocated").counter());
        assertNotNull(registry.find("process.uptime").timeGauge());
        int meters = registry.getMeters().size();
        metrics.bind();
        assertEquals(meters, registry.getMeters().size(), "bound twice");
        metrics.stop(null);
    }

    @Test
    void nothingIsBoundAfterShutdown() {
        SimpleMeterRegistry registry = new SimpleMeterRegistry();
        JvmMetrics metrics = new JvmMetrics(registry, null);
        metrics.stop(null);
        metrics.bind();
        assertFalse(metrics.bound());
        assertTrue(registry.getMeters().isEmpty());
    }
}
