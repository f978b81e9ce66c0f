package io.devicegateway.dedup;

import java.util.concurrent.atomic.AtomicInteger;

import jakarta.inject.Singleton;

import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;

/** Meters of duplicate removal, registered up front (README: Metrics). */
@Singleton
public class DedupMetrics {

    final Counter duplicates;
    final Counter unchecked;
    final Counter beyondWindow;
    final Counter busy;
    final Counter invalidSequence;
    final Counter lookupFound;
    final Counter lookupNotFound;
    final Counter redisFailures;
    final AtomicInteger held = new AtomicInteger();
    final AtomicInteger unavailable = new AtomicInteger();

    DedupMetrics(MeterRegistry registry) {
        duplicates = Counter.builder("gateway.ingest.duplicates.dropped")
                .description("Numbered messages already in Kafka: acknowledged to the broker, not written again")
                .register(registry);
        unchecked = Counter.builder("gateway.dedup.unchecked")
                .description("Numbered messages written without the check (Redis unreachable, on-unavailable=unchecked)")
                .register(registry);
        beyondWindow = Counter.builder("gateway.dedup.beyond.window")
                .description("Numbered messages older than the window: written with dedup=beyond-window")
                .register(registry);
        busy = Counter.builder("gateway.dedup.busy")
                .description("Copies held because another copy of the same sequence was being written")
                .register(registry);
        invalidSequence = Counter.builder("gateway.dedup.invalid.sequence")
                .description("Messages whose sequence or epoch property is not an unsigned 64-bit decimal "
                        + "(treated as not numbered)")
                .register(registry);
        lookupFound = Counter.builder("gateway.dedup.lookups").tag("result", "found")
                .description("Claims of dead gateway processes resolved by looking in Kafka").register(registry);
        lookupNotFound = Counter.builder("gateway.dedup.lookups").tag("result", "not-found")
                .description("Claims of dead gateway processes resolved by looking in Kafka").register(registry);
        redisFailures = Counter.builder("gateway.dedup.redis.failures")
                .description("Dedup Redis calls that failed or timed out (retried)").register(registry);
        Gauge.builder("gateway.dedup.held", held, AtomicInteger::get)
                .description("Numbered messages (and the same devices' messages behind them) not yet written or dropped")
                .register(registry);
        Gauge.builder("gateway.dedup.redis.unavailable", unavailable, AtomicInteger::get)
                .description("1 while the dedup memory (Redis) is unreachable").register(registry);
    }
}
