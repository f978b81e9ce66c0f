package io.devicegateway.platform.kafka;

import java.time.Duration;
import java.util.Map;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.locks.LockSupport;

import org.apache.kafka.clients.producer.Callback;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.errors.RetriableException;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.jboss.logging.Logger;

/**
 * One Kafka producer fed by one sender thread, so records leave in exactly the order they were handed in, and
 * the caller (an event loop) never blocks on Kafka: {@link #send} only enqueues.
 *
 * <p>Failures never lose a record and never reorder one: a send that fails before the record reaches the
 * producer's buffer (no metadata while Kafka is down) is retried in place, holding back everything behind it;
 * the producer itself retries transient broker errors for as long as {@code delivery.timeout.ms} (unbounded by
 * default here). Only a non-retriable rejection (e.g. a record over the broker's size limit) reaches the
 * callback as an error.
 *
 * <p>Measured against the SmallRye Kafka sink (Emitter + channel) on the ingest path, this writer cut the
 * gateway's CPU per message by removing per-message reactive-streams and context-propagation work.
 */
public final class OrderedKafkaWriter implements AutoCloseable {

    private static final Logger LOG = Logger.getLogger(OrderedKafkaWriter.class);
    private static final long MAX_RETRY_DELAY_NANOS = Duration.ofSeconds(5).toNanos();

    private record Pending(ProducerRecord<String, byte[]> record, Callback callback) {
    }

    private final KafkaProducer<String, byte[]> producer;
    private final ConcurrentLinkedQueue<Pending> queue = new ConcurrentLinkedQueue<>();
    private final AtomicBoolean parked = new AtomicBoolean();
    private final Thread sender;
    private final Runnable onRetry;
    private volatile boolean closing;

    /**
     * @param config  complete producer configuration (bootstrap servers, security, tuning)
     * @param name    names the sender thread and the producer's client id
     * @param onRetry called once per in-place retry, for metrics
     */
    public OrderedKafkaWriter(Map<String, Object> config, String name, Runnable onRetry) {
        this.producer = new KafkaProducer<>(config, new StringSerializer(), new ByteArraySerializer());
        this.onRetry = onRetry;
        this.sender = new Thread(this::run, name + "-kafka-sender");
        sender.setDaemon(true);
        sender.start();
    }

    /** Enqueues a record; the callback runs on the producer's I/O thread once Kafka has acknowledged it. */
    public void send(ProducerRecord<String, byte[]> record, Callback callback) {
        queue.add(new Pending(record, callback));
        if (parked.get()) {
            LockSupport.unpark(sender);
        }
    }

    private void run() {
        while (true) {
            Pending next = queue.poll();
            if (next == null) {
                if (closing) {
                    return;
                }
                parked.set(true);
                if (queue.isEmpty()) {
                    LockSupport.parkNanos(100_000_000L);
                }
                parked.set(false);
                continue;
            }
            sendInPlace(next);
        }
    }

    private void sendInPlace(Pending pending) {
        long delay = Duration.ofMillis(100).toNanos();
        while (true) {
            Exception failure;
            try {
                Future<RecordMetadata> future = producer.send(pending.record(), (metadata, error) -> {
                    if (error instanceof RetriableException && Thread.currentThread() == sender && !closing) {
                        return; // failed inside send() on this thread: retried in place below, in order
                    }
                    if (error == null || !(error instanceof RetriableException) || closing) {
                        pending.callback().onCompletion(metadata, error);
                    } else {
                        // retriable after the producer gave up (only with a finite delivery.timeout.ms)
                        LOG.warnf("Kafka write to %s failed (%s); re-sending", pending.record().topic(), error);
                        onRetry.run();
                        send(pending.record(), pending.callback());
                    }
                });
                failure = immediateFailure(future);
            } catch (RuntimeException e) {
                failure = e;
            }
            if (failure == null) {
                return;
            }
            if (!(failure instanceof RetriableException) || closing) {
                return; // already reported to the callback by the producer, or closing
            }
            // e.g. no metadata within max.block.ms while Kafka is down: hold the line and try again
            onRetry.run();
            LOG.warnf("Kafka not accepting writes to %s (%s); retrying in %d ms", pending.record().topic(),
                    failure.getClass().getSimpleName(), delay / 1_000_000);
            LockSupport.parkNanos(delay);
            delay = Math.min(delay * 2, MAX_RETRY_DELAY_NANOS);
        }
    }

    /** The producer reports a failed send() through an already-completed future (and the callback). */
    private static Exception immediateFailure(Future<RecordMetadata> future) {
        if (!future.isDone()) {
            return null;
        }
        try {
            future.get();
            return null;
        } catch (java.util.concurrent.ExecutionException e) {
            return e.getCause() instanceof Exception ex ? ex : e;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return e;
        }
    }

    /** Sends what is queued and waits for Kafka's acknowledgements, up to the timeout. */
    public void flush(Duration timeout) {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (!queue.isEmpty() && System.nanoTime() < deadline) {
            LockSupport.parkNanos(1_000_000L);
        }
        producer.flush();
    }

    @Override
    public void close() {
        closing = true;
        LockSupport.unpark(sender);
        try {
            sender.join(5_000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        producer.close(Duration.ofSeconds(5));
    }
}
