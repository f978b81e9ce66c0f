package io.devicegateway.platform.kafka;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;
import java.util.function.Supplier;

import org.apache.kafka.clients.producer.Callback;
import org.apache.kafka.clients.producer.Producer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.errors.RecordBatchTooLargeException;
import org.apache.kafka.common.errors.RecordTooLargeException;
import org.apache.kafka.common.errors.RetriableException;
import org.jboss.logging.Logger;

/**
 * One Kafka producer fed by one sender thread, so records leave in exactly the order they were handed in, and
 * the caller (an event loop) never blocks on Kafka: {@link #send} only enqueues.
 *
 * <p>Every record taken ends in exactly one outcome, reported once to its callback: written (no error), or
 * refused for its size ({@link #isSizeRefusal}), which is the only refusal a caller may turn into a loss of the
 * payload. Everything else is retried here until it is written:
 * <ul>
 * <li>a send that fails before the record reaches the producer's buffer (no metadata while Kafka is down) is
 * retried in place, holding back everything behind it;</li>
 * <li>transient broker errors are retried by the producer itself ({@code delivery.timeout.ms} unbounded);</li>
 * <li>any other refusal (topic authorization, unknown server error, ...) holds the line: the writer stops taking
 * new records, waits for every record already handed to the producer to settle, and re-sends the refused ones in
 * their original order with a growing delay, until Kafka accepts them (the cause fixed);</li>
 * <li>a producer in a fatal state ({@code send} throws, e.g. after a fatal authorization error or once closed) is
 * replaced by a new one, and the records it never acknowledged are re-sent through the new one.</li>
 * </ul>
 *
 * <p>{@link #pending()} counts records taken and not yet settled; {@link #stalledMillis()} tells a writer that
 * holds records and has not settled one for a while (Kafka down, or a refusal that keeps coming back).
 *
 * <p>The producer is made on the sender thread, never on the caller's ({@link Start}): building a Kafka client
 * costs tens of milliseconds of class loading and setup, which must not sit on the main thread during startup nor
 * on an event loop. A writer that is rarely used ({@link Start#FIRST_RECORD}) has neither thread nor producer
 * until its first record.
 *
 * <p>Measured against the SmallRye Kafka sink (Emitter + channel) on the ingest path, this writer cut the
 * gateway's CPU per message by removing per-message reactive-streams and context-propagation work.
 */
public final class OrderedKafkaWriter implements AutoCloseable {

    private static final Logger LOG = Logger.getLogger(OrderedKafkaWriter.class);
    private static final long FIRST_RETRY_DELAY_NANOS = Duration.ofMillis(100).toNanos();
    private static final long MAX_RETRY_DELAY_NANOS = Duration.ofSeconds(5).toNanos();

    /** When the producer (and the sender thread) are made. */
    public enum Start {
        /** In the constructor, on the caller's thread. */
        NOW,
        /** At once, on the sender thread: the caller goes on while it is built (and connects). */
        BACKGROUND,
        /** Thread and producer when the first record arrives: nothing at all for a writer that is never used. */
        FIRST_RECORD
    }

    /** What the writer reports to metrics. */
    public interface Listener {
        /** A send retried in place (Kafka not accepting writes). */
        default void retried() {
        }

        /** Kafka refused a record for a reason other than its size; it is held and re-sent. */
        default void refused(Exception error) {
        }

        /** The producer was replaced after a fatal state. */
        default void producerReplaced(Exception cause) {
        }
    }

    private static final class Pending {
        final long sequence;
        final ProducerRecord<String, byte[]> record;
        final Callback callback;
        final int bytes;

        Pending(long sequence, ProducerRecord<String, byte[]> record, Callback callback) {
            this.sequence = sequence;
            this.record = record;
            this.callback = callback;
            this.bytes = (record.value() == null ? 0 : record.value().length)
                    + (record.key() == null ? 0 : record.key().length());
        }
    }

    private final String name;
    private final Supplier<Producer<String, byte[]>> producerFactory;
    private final Listener listener;
    private final int maxPending;
    private final long maxPendingBytes;
    private volatile Producer<String, byte[]> producer;
    private final ConcurrentLinkedQueue<Pending> queue = new ConcurrentLinkedQueue<>();
    /** Refused by Kafka (not for size), waiting to be re-sent in sequence order. */
    private final ConcurrentLinkedQueue<Pending> refused = new ConcurrentLinkedQueue<>();
    /** Handed to the current producer and not yet settled. */
    private final AtomicInteger outstanding = new AtomicInteger();
    private final AtomicInteger pending = new AtomicInteger();
    private final AtomicLong pendingBytes = new AtomicLong();
    private final AtomicBoolean parked = new AtomicBoolean();
    private final AtomicLong sequence = new AtomicLong();
    private final Thread sender;
    private final AtomicBoolean senderStarted = new AtomicBoolean();
    private volatile long lastProgressNanos = System.nanoTime();
    /** When Kafka last answered this writer (a record written, or the warm-up's metadata); 0 = never. */
    private volatile long lastAnswerMillis;
    private final java.util.List<String> warmUpTopics;
    private volatile long lingerNanos;
    /** Sender thread only: records went to the producer since the sender last waited. */
    private boolean handedOver;
    private volatile String lastError;
    private volatile boolean closing;

    /**
     * @param producerFactory makes the producer, again whenever the current one is in a fatal state
     * @param name            names the sender thread
     * @param maxPending      records (and {@code maxPendingBytes} bytes) beyond which {@link #hasRoom()} is false
     */
    public OrderedKafkaWriter(Supplier<Producer<String, byte[]>> producerFactory, String name, Listener listener,
            int maxPending, long maxPendingBytes) {
        this(producerFactory, name, listener, maxPending, maxPendingBytes, Start.NOW, List.of());
    }

    /**
     * As above; {@code start} decides when (and on which thread) the producer is made. Once made, the sender thread
     * fetches the metadata of {@code warmUpTopics} before it sends anything: the first records need no metadata
     * round trip of their own, and Kafka has answered ({@link #lastAnswerMillis()}) as soon as the writer can write.
     */
    public OrderedKafkaWriter(Supplier<Producer<String, byte[]>> producerFactory, String name, Listener listener,
            int maxPending, long maxPendingBytes, Start start, List<String> warmUpTopics) {
        this.name = name;
        this.warmUpTopics = List.copyOf(warmUpTopics);
        this.producerFactory = producerFactory;
        this.listener = listener;
        this.maxPending = maxPending;
        this.maxPendingBytes = maxPendingBytes;
        if (start == Start.NOW) {
            this.producer = producerFactory.get();
        }
        this.sender = new Thread(this::run, name + "-kafka-sender");
        sender.setDaemon(true);
        if (start != Start.FIRST_RECORD) {
            startSender();
        }
    }

    private void startSender() {
        if (senderStarted.compareAndSet(false, true)) {
            sender.start();
        }
    }

    /**
     * Enqueues a record; the callback runs once, on a producer thread, when Kafka has it (no error) or has refused
     * it for its size ({@link #isSizeRefusal}). Never blocks. Callers bound what they hand in with {@link #hasRoom()}.
     */
    public void send(ProducerRecord<String, byte[]> record, Callback callback) {
        Pending p = new Pending(sequence.incrementAndGet(), record, callback);
        if (pending.getAndIncrement() == 0) {
            lastProgressNanos = System.nanoTime(); // a stall is measured from the oldest unsettled record
        }
        pendingBytes.addAndGet(p.bytes);
        queue.add(p);
        if (!senderStarted.get()) {
            startSender(); // Start.FIRST_RECORD: the first record brings the thread (which makes the producer)
        } else if (parked.get()) {
            LockSupport.unpark(sender);
        }
    }

    /** True while fewer than the configured records and bytes are pending: callers stop handing in work beyond. */
    public boolean hasRoom() {
        return pending.get() < maxPending && pendingBytes.get() < maxPendingBytes;
    }

    /** Records taken and not yet settled (queued, at the producer, or held after a refusal). */
    public int pending() {
        return pending.get();
    }

    public long pendingBytes() {
        return pendingBytes.get();
    }

    /** How long records have been pending without one settling; 0 when nothing is pending. */
    public long stalledMillis() {
        return pending.get() == 0 ? 0 : (System.nanoTime() - lastProgressNanos) / 1_000_000;
    }

    /** The last error that held records back (refusal, fatal producer state, Kafka not accepting), or null. */
    public String lastError() {
        return lastError;
    }

    /** A refusal other than size is held and retried; a size refusal is final. */
    public static boolean isSizeRefusal(Exception error) {
        return error instanceof RecordTooLargeException || error instanceof RecordBatchTooLargeException;
    }

    /** When Kafka last answered this writer (record written or metadata fetched), epoch millis; 0 if never. */
    public long lastAnswerMillis() {
        return lastAnswerMillis;
    }

    /** Metadata of the writer's topics, fetched once; Kafka down (or a topic missing) only ends the warm-up. */
    private void warmUp(Producer<String, byte[]> made) {
        for (String topic : warmUpTopics) {
            if (closing) {
                return;
            }
            try {
                made.partitionsFor(topic); // blocks at most max.block.ms
                lastAnswerMillis = System.currentTimeMillis();
            } catch (RuntimeException e) {
                LOG.debugf("Metadata of %s not fetched at start (%s): the first record will fetch it", topic, e);
                return;
            }
        }
    }

    public String name() {
        return name;
    }

    private void run() {
        if (producer == null) {
            Producer<String, byte[]> made = newProducer();
            if (made == null) {
                return; // closed before a producer could be made: nothing was handed to Kafka
            }
            producer = made;
            if (closing) {
                made.close(Duration.ZERO); // close() may have looked before it existed
                return;
            }
            warmUp(made);
        }
        while (true) {
            if (!refused.isEmpty()) {
                resendRefused();
                continue;
            }
            Pending next = queue.poll();
            if (next == null) {
                if (closing) {
                    return;
                }
                long window = lingerNanos;
                if (window > 0 && handedOver) {
                    // records are flowing: collect what arrives in the next window and hand it over in one go (one
                    // wake-up and one Kafka request per window instead of per record); not unparked by send() meanwhile
                    handedOver = false;
                    LockSupport.parkNanos(window);
                    continue;
                }
                // quiet: sleep until the next record, which then goes at once
                parked.set(true);
                if (queue.isEmpty() && refused.isEmpty()) {
                    LockSupport.parkNanos(1_000_000_000L);
                }
                parked.set(false);
                continue;
            }
            sendInPlace(next);
            handedOver = true;
        }
    }

    /**
     * Adaptive batching: after handing records to the producer, the sender waits {@code window} and then hands over
     * everything that arrived meanwhile at once, for as long as records keep coming. A record after a quiet spell
     * goes at once; under a steady stream each record waits at most {@code window} here, and the producer makes one
     * request of each handful instead of waking up, and often sending, for every record. Zero: every record at once.
     */
    public void linger(Duration window) {
        this.lingerNanos = window.toNanos();
    }

    /**
     * Holds the line: nothing new leaves until every record handed to the producer has settled, then the refused
     * ones go again in their original order, after a delay that grows while the refusal persists.
     */
    private void resendRefused() {
        long delay = FIRST_RETRY_DELAY_NANOS;
        while (!refused.isEmpty() && !closing) {
            awaitNothingOutstanding();
            LockSupport.parkNanos(delay);
            delay = Math.min(delay * 2, MAX_RETRY_DELAY_NANOS);
            // a fresh producer each round: a refused batch can leave an idempotent producer's sequence state
            // (or the producer itself, e.g. after a cluster authorization error) unusable
            replaceProducer(producer, null);
            List<Pending> round = new ArrayList<>();
            Pending p;
            while ((p = refused.poll()) != null) {
                round.add(p);
            }
            round.sort(Comparator.comparingLong(x -> x.sequence));
            // the oldest goes alone first: while the cause persists only it is refused again, and once the cause
            // is fixed no later record can be written ahead of one refused in the same round
            sendInPlace(round.get(0));
            awaitNothingOutstanding();
            for (int i = 1; i < round.size(); i++) {
                if (!refused.isEmpty()) {
                    refused.addAll(round.subList(i, round.size())); // refused again: the rest waits, in order
                    break;
                }
                sendInPlace(round.get(i));
            }
            awaitNothingOutstanding(); // this round settles before deciding whether the refusal persists
        }
    }

    private void awaitNothingOutstanding() {
        while (outstanding.get() > 0 && !closing) {
            LockSupport.parkNanos(10_000_000L);
        }
    }

    private void sendInPlace(Pending p) {
        long delay = FIRST_RETRY_DELAY_NANOS;
        while (!closing) {
            Producer<String, byte[]> current = producer;
            Exception failure;
            outstanding.incrementAndGet();
            try {
                Future<RecordMetadata> future = current.send(p.record, (metadata, error) -> {
                    if (Thread.currentThread() == sender && error instanceof RetriableException) {
                        return; // failed inside send() on this thread: retried in place below, in order
                    }
                    settle(p, metadata, error);
                });
                failure = immediateFailure(future);
            } catch (RuntimeException e) {
                // thrown without the callback (a fatal producer state, or closed): the record is still ours
                outstanding.decrementAndGet();
                if (!closing) {
                    replaceProducer(current, e);
                    refused.add(p); // re-sent after what the broken producer gives back, in sequence order
                }
                return;
            }
            if (!(failure instanceof RetriableException)) {
                return; // accepted, or already settled through the callback (written, size refusal, held)
            }
            // e.g. no metadata within max.block.ms while Kafka is down: hold the line and try again
            outstanding.decrementAndGet();
            lastError = failure.getClass().getSimpleName() + ": " + failure.getMessage();
            listener.retried();
            LOG.warnf("Kafka not accepting writes to %s (%s); retrying in %d ms", p.record.topic(),
                    failure.getClass().getSimpleName(), delay / 1_000_000);
            LockSupport.parkNanos(delay);
            delay = Math.min(delay * 2, MAX_RETRY_DELAY_NANOS);
        }
    }

    /** Exactly once per record handed to a producer. */
    private void settle(Pending p, RecordMetadata metadata, Exception error) {
        if (closing && error != null) {
            outstanding.decrementAndGet();
            return; // closing: not acknowledged, the source keeps it (the MQTT broker redelivers it)
        }
        if (error == null || isSizeRefusal(error)) {
            pending.decrementAndGet();
            pendingBytes.addAndGet(-p.bytes);
            lastProgressNanos = System.nanoTime();
            if (error == null) {
                lastError = null;
                lastAnswerMillis = System.currentTimeMillis();
            }
            outstanding.decrementAndGet();
            p.callback.onCompletion(metadata, error);
            return;
        }
        // any other refusal (or a retriable error after a finite delivery.timeout.ms): held and re-sent in order
        lastError = error.getClass().getSimpleName() + ": " + error.getMessage();
        refused.add(p); // before the decrement, so the sender sees it once nothing is outstanding
        outstanding.decrementAndGet();
        listener.refused(error);
        LockSupport.unpark(sender);
    }

    /** Closes {@code broken} (its unsettled records come back as refused) and makes a new producer. */
    private void replaceProducer(Producer<String, byte[]> broken, Exception cause) {
        if (producer != broken) {
            return;
        }
        if (cause != null) {
            lastError = cause.getClass().getSimpleName() + ": " + cause.getMessage();
            LOG.errorf("Kafka producer of writer %s is unusable (%s); replacing it, unacknowledged records are re-sent",
                    name, lastError);
        }
        listener.producerReplaced(cause);
        try {
            broken.close(Duration.ZERO);
        } catch (RuntimeException e) {
            LOG.debugf("Closing the broken producer: %s", e);
        }
        Producer<String, byte[]> fresh = newProducer();
        if (fresh != null) {
            producer = fresh;
        }
    }

    /** A new producer, retried with a growing delay (e.g. the bootstrap name does not resolve yet); null if closing. */
    private Producer<String, byte[]> newProducer() {
        long delay = FIRST_RETRY_DELAY_NANOS;
        while (!closing) {
            try {
                return producerFactory.get();
            } catch (RuntimeException e) {
                lastError = e.getClass().getSimpleName() + ": " + e.getMessage();
                LOG.warnf("Cannot create a Kafka producer for writer %s (%s); retrying", name, e.toString());
                LockSupport.parkNanos(delay);
                delay = Math.min(delay * 2, MAX_RETRY_DELAY_NANOS);
            }
        }
        return null;
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

    /**
     * Waits until every pending record has settled, at most {@code timeout}; never longer (Kafka may be down).
     *
     * @return true if nothing is pending any more
     */
    public boolean flush(Duration timeout) {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (pending.get() > 0 && System.nanoTime() < deadline) {
            LockSupport.parkNanos(5_000_000L);
        }
        return pending.get() == 0;
    }

    /**
     * Stops the writer within {@code timeout}. Records not settled by then are never reported: their sources keep
     * them (an unacknowledged MQTT message is redelivered by the broker).
     */
    public void close(Duration timeout) {
        closing = true;
        long deadline = System.nanoTime() + timeout.toNanos();
        if (senderStarted.get()) {
            LockSupport.unpark(sender);
            try {
                sender.join(Math.max(1, timeout.toMillis() / 2));
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        Producer<String, byte[]> current = producer;
        if (current != null) {
            long left = Math.max(0, deadline - System.nanoTime());
            current.close(Duration.ofNanos(left));
        }
    }

    @Override
    public void close() {
        close(Duration.ofSeconds(5));
    }
}
