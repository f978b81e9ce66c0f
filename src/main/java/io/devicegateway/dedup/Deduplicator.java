package io.devicegateway.dedup;

import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;

import jakarta.enterprise.event.Observes;
import jakarta.inject.Inject;
import jakarta.inject.Singleton;

import org.jboss.logging.Logger;

import io.devicegateway.platform.mqtt.MqttConnection;
import io.devicegateway.session.RedisCalls;
import io.devicegateway.session.RedisKeys;
import io.devicegateway.v1.DeviceMessage;
import io.quarkus.runtime.StartupEvent;
import io.smallrye.common.annotation.Identifier;
import io.vertx.core.Vertx;
import io.vertx.redis.client.Command;
import io.vertx.redis.client.Request;
import io.vertx.redis.client.Response;

/**
 * At most one Kafka record per (device, epoch, sequence) for devices that number their messages (README: Duplicate
 * removal). Every numbered message copy is <b>claimed</b> in Redis before it is written (one Lua call per device
 * epoch and flush, pipelined with everything else due), and <b>committed</b> once Kafka has its record; a copy whose
 * sequence is committed is a duplicate (acknowledged, counted, not written). A copy claimed by another live gateway
 * process is held (not acknowledged) and checked again; one claimed by a process that is gone (its owner key
 * expired) is looked up in Kafka ({@link KafkaLookup}) and then either committed as found or taken over and written.
 *
 * <p>Order: each device with numbered messages in progress has a lane; its messages (numbered or not) leave in
 * arrival order, and a held message holds everything of that device behind it. Devices without anything in a lane
 * take the plain path (no Redis call, one volatile read).
 *
 * <p>Thread safety: one lock; {@link Sink} calls are made under it, so records reach the Kafka writer in lane order.
 */
@Singleton
public class Deduplicator {

    private static final Logger LOG = Logger.getLogger(Deduplicator.class);
    private static final int MAX_BATCHES_IN_FLIGHT = 1;
    private static final int MAX_COPIES_PER_BATCH = 4_000;
    private static final int MAX_COPIES_PER_CALL = 1_000;
    private static final long FIRST_BACKOFF_MS = 100;
    private static final long MAX_BACKOFF_MS = 5_000;

    /** Where the decided message copies go (ingest). Called under the lock, in each device's arrival order. */
    public interface Sink {
        /** Write it; {@code mark} is null (checked), {@code unchecked} or {@code beyond-window} (header dedup). */
        void write(Ticket ticket, String mark);

        /** Already in Kafka: acknowledge, do not write. */
        void duplicate(Ticket ticket);
    }

    enum State {
        NEW, CLAIMING, WAIT, CHECK_OWNER, CHECKING, LOOKUP, LOOKING, RESOLVE, RESOLVING,
        CLAIMED, DUPLICATE, BEYOND, UNCHECKED, PASS
    }

    /** One message copy on its way through duplicate removal. */
    public static final class Ticket {
        final String deviceId;
        final long epoch;
        final long sequence;
        final String topic;
        final boolean numbered;
        Object message;
        State state;
        String claimValue;
        /** The claim value of the copy holding it (busy). */
        String heldBy;
        boolean found;
        /** Written as claimed: committed once Kafka has it. */
        boolean claimed;
        int rounds;
        Lane lane;

        Ticket(String deviceId, long epoch, long sequence, String topic, boolean numbered) {
            this.deviceId = deviceId;
            this.epoch = epoch;
            this.sequence = sequence;
            this.topic = topic;
            this.numbered = numbered;
        }

        public long epoch() {
            return epoch;
        }

        public long sequence() {
            return sequence;
        }

        public Object message() {
            return message;
        }

        public void attach(Object message) {
            this.message = message;
        }

        String decimal() {
            return Long.toUnsignedString(sequence);
        }
    }

    static final class Lane {
        final String deviceId;
        final ArrayDeque<Ticket> queue = new ArrayDeque<>();
        boolean claiming;

        Lane(String deviceId) {
            this.deviceId = deviceId;
        }
    }

    private final DedupConfig config;
    private final DedupMetrics metrics;
    private final RedisKeys keys;
    private final RedisCalls redis;
    private final Vertx vertx;
    private final String token;
    private final String ownerKey;
    private final String window;
    private final String ttl;
    private final long ownerLeaseMillis;
    private final long renewMillis;
    private final String claimSha = DedupScripts.sha1(DedupScripts.CLAIM);
    private final String commitSha = DedupScripts.sha1(DedupScripts.COMMIT);
    private final String resolveSha = DedupScripts.sha1(DedupScripts.RESOLVE);
    @Inject
    MqttConnection connection;
    @Inject
    @Identifier("default-kafka-broker")
    Map<String, Object> kafkaConfig;

    private Sink sink;
    private final Map<String, Lane> lanes = new HashMap<>();
    private volatile int laneCount;
    private final Set<Lane> toClaim = new LinkedHashSet<>();
    private final ArrayDeque<Ticket> toCommit = new ArrayDeque<>();
    private final List<Ticket> toCheck = new ArrayList<>();
    private final List<Ticket> toLookUp = new ArrayList<>();
    private final List<Ticket> toResolve = new ArrayList<>();
    /** Claim values of this process's copies not yet finished: a busy answer naming one of them waits for it. */
    private final Set<String> liveClaims = new HashSet<>();
    private int batchesInFlight;
    private boolean lookupRunning;
    private boolean useEval;
    private long claimCounter;
    private long retryAtMillis;
    private long backoffMillis = FIRST_BACKOFF_MS;
    private boolean retryTimerSet;
    private volatile long unavailableSinceMillis;
    private volatile long ownerRenewedNanos;
    private volatile boolean ownerRenewed;
    private ExecutorService lookupThread;
    private KafkaLookup lookup;

    Deduplicator(DedupConfig config, DedupMetrics metrics, RedisKeys keys, RedisCalls redis, Vertx vertx) {
        int w = config.window();
        if (w < 64 || w > 1 << 20 || Integer.bitCount(w) != 1) {
            throw new IllegalArgumentException("gateway.dedup.window must be a power of two from 64 to 1048576, not " + w);
        }
        this.config = config;
        this.metrics = metrics;
        this.keys = keys;
        this.redis = redis;
        this.vertx = vertx;
        this.token = Long.toHexString(ThreadLocalRandom.current().nextLong() | Long.MIN_VALUE);
        this.ownerKey = keys.dedupOwner(token);
        this.window = Integer.toString(w);
        this.ttl = Long.toString(config.stateTtl().toMillis());
        this.ownerLeaseMillis = config.ownerLease().toMillis();
        this.renewMillis = Math.max(100, ownerLeaseMillis / 5);
    }

    void start(@Observes StartupEvent event) {
        if (!config.enabled()) {
            return;
        }
        // on an event loop, not on main: the first Redis call loads the client's classes, and main has the rest of
        // the start to do meanwhile
        vertx.runOnContext(v -> renewOwner());
        vertx.setPeriodic(renewMillis, id -> renewOwner());
    }

    public boolean enabled() {
        return config.enabled();
    }

    public DedupConfig config() {
        return config;
    }

    public void sink(Sink sink) {
        this.sink = sink;
    }

    /** This process's owner token (claims name it). */
    public String token() {
        return token;
    }

    /**
     * Reads the configured sequence and epoch user properties into the envelope (a later hook may set them instead).
     * A value that is not an unsigned 64-bit decimal is counted and ignored (the message is then not numbered).
     */
    public void readSequence(io.devicegateway.platform.mqtt.InboundMessage message, DeviceMessage.Builder envelope) {
        String seq = message.userProperty(config.sequenceProperty());
        if (seq == null) {
            return;
        }
        long sequence = parseUnsigned(seq);
        String epochText = message.userProperty(config.epochProperty());
        long epoch = epochText == null ? 0 : parseUnsigned(epochText);
        if ((sequence == -1 && !"18446744073709551615".equals(seq))
                || (epoch == -1 && !"18446744073709551615".equals(epochText))) {
            metrics.invalidSequence.increment();
            return;
        }
        envelope.setSequence(sequence);
        if (epochText != null) {
            envelope.setSequenceEpoch(epoch);
        }
    }

    /** An unsigned 64-bit decimal, or -1 (also the value of 2^64 - 1, which callers tell apart). */
    static long parseUnsigned(String text) {
        int n = text.length();
        if (n == 0 || n > 20) {
            return -1;
        }
        for (int i = 0; i < n; i++) {
            char c = text.charAt(i);
            if (c < '0' || c > '9') {
                return -1;
            }
        }
        try {
            return Long.parseUnsignedLong(text);
        } catch (NumberFormatException e) {
            return -1;
        }
    }

    /** A numbered message copy; attach the message, then {@link #submit}. */
    public Ticket ticket(String deviceId, long epoch, long sequence, String kafkaTopic) {
        return new Ticket(deviceId, epoch, sequence, kafkaTopic, true);
    }

    public void submit(Ticket ticket) {
        synchronized (this) {
            Lane lane = lane(ticket.deviceId);
            ticket.lane = lane;
            ticket.state = State.NEW;
            ticket.claimValue = token + "|" + System.currentTimeMillis() + "|" + (++claimCounter);
            liveClaims.add(ticket.claimValue);
            lane.queue.add(ticket);
            metrics.held.incrementAndGet();
            toClaim.add(lane);
            flush();
        }
    }

    /**
     * A message without a sequence: false when its device has nothing in duplicate removal (the caller writes it
     * directly); else it is queued behind that device's numbered messages and handed to the sink in order.
     */
    public boolean passThrough(String deviceId, Object message) {
        if (laneCount == 0) {
            return false;
        }
        synchronized (this) {
            Lane lane = lanes.get(deviceId);
            if (lane == null) {
                return false;
            }
            Ticket ticket = new Ticket(deviceId, 0, 0, null, false);
            ticket.message = message;
            ticket.state = State.PASS;
            ticket.lane = lane;
            lane.queue.add(ticket);
            metrics.held.incrementAndGet();
            pump(lane);
            return true;
        }
    }

    /** Kafka has the copy's record (written or dead-lettered): mark it committed. The caller acknowledges it. */
    public void written(Ticket ticket) {
        if (!ticket.claimed) {
            return; // unchecked, beyond the window or not numbered: nothing to commit
        }
        synchronized (this) {
            toCommit.add(ticket);
            flush();
        }
    }

    /** True once Redis calls have been failing for longer than {@code millis} (readiness). */
    public long unavailableMillis() {
        long since = unavailableSinceMillis;
        return since == 0 ? 0 : System.currentTimeMillis() - since;
    }

    private Lane lane(String deviceId) {
        Lane lane = lanes.get(deviceId);
        if (lane == null) {
            lane = new Lane(deviceId);
            lanes.put(deviceId, lane);
            laneCount = lanes.size();
        }
        return lane;
    }

    /** Hands decided copies at the head of the lane to the sink, in order; stops at the first undecided one. */
    private void pump(Lane lane) {
        Ticket t;
        while ((t = lane.queue.peek()) != null) {
            switch (t.state) {
                case PASS -> sink.write(t, null);
                case CLAIMED -> {
                    if (!ownerFresh()) {
                        // this process could not prove it is alive lately: its claims may be taken over; claim again
                        retryLater(t);
                        return;
                    }
                    t.claimed = true;
                    sink.write(t, null);
                }
                case DUPLICATE -> {
                    liveClaims.remove(t.claimValue);
                    metrics.duplicates.increment();
                    sink.duplicate(t);
                }
                case BEYOND -> {
                    liveClaims.remove(t.claimValue);
                    metrics.beyondWindow.increment();
                    sink.write(t, "beyond-window");
                }
                case UNCHECKED -> {
                    liveClaims.remove(t.claimValue);
                    metrics.unchecked.increment();
                    sink.write(t, "unchecked");
                }
                default -> {
                    return;
                }
            }
            lane.queue.poll();
            metrics.held.decrementAndGet();
        }
        lanes.remove(lane.deviceId);
        laneCount = lanes.size();
        toClaim.remove(lane);
    }

    private boolean ownerFresh() {
        return ownerRenewed && System.nanoTime() - ownerRenewedNanos < (ownerLeaseMillis - 2 * renewMillis) * 1_000_000L;
    }

    private boolean hold() {
        return config.onUnavailable() == DedupConfig.OnUnavailable.HOLD;
    }

    /** What one request of a batch was for. */
    private record Part(int kind, List<Ticket> tickets, String owner) {
        static final int CLAIM = 0, COMMIT = 1, CHECK = 2, RESOLVE = 3;
    }

    /** Under the lock: sends what is due in one pipelined batch, unless enough batches are on their way. */
    private void flush() {
        if (batchesInFlight >= MAX_BATCHES_IN_FLIGHT) {
            return;
        }
        startLookups();
        boolean waiting = System.currentTimeMillis() < retryAtMillis;
        if (waiting && !hold()) {
            // Redis known unreachable: numbered messages are written unchecked rather than waiting for it
            for (Lane lane : new ArrayList<>(toClaim)) {
                for (Ticket t : lane.queue) {
                    if (t.state == State.NEW) {
                        t.state = State.UNCHECKED;
                    }
                }
                toClaim.remove(lane);
                pump(lane);
            }
        }
        if (waiting) {
            return;
        }
        List<Request> requests = new ArrayList<>();
        List<String> routing = new ArrayList<>();
        List<Part> parts = new ArrayList<>();
        int copies = 0;
        while (!toCommit.isEmpty() && copies < MAX_COPIES_PER_BATCH) {
            // group the next commits by device epoch, in one call each
            Map<String, List<Ticket>> groups = new LinkedHashMap<>();
            while (!toCommit.isEmpty() && copies < MAX_COPIES_PER_BATCH) {
                Ticket t = toCommit.poll();
                groups.computeIfAbsent(t.deviceId + "\u0000" + t.epoch, k -> new ArrayList<>()).add(t);
                copies++;
            }
            for (List<Ticket> group : groups.values()) {
                for (int from = 0; from < group.size(); from += MAX_COPIES_PER_CALL) {
                    List<Ticket> call = group.subList(from, Math.min(group.size(), from + MAX_COPIES_PER_CALL));
                    Ticket first = call.get(0);
                    Request r = script(commitSha, DedupScripts.COMMIT, first);
                    for (Ticket t : call) {
                        long s = t.sequence;
                        r.arg(t.decimal()).arg(s >>> 32).arg(s & 0xffffffffL);
                    }
                    add(requests, routing, parts, r, first, new Part(Part.COMMIT, new ArrayList<>(call), null));
                }
            }
        }
        for (var it = toClaim.iterator(); it.hasNext() && copies < MAX_COPIES_PER_BATCH;) {
            Lane lane = it.next();
            if (lane.claiming) {
                continue;
            }
            it.remove();
            Map<Long, List<Ticket>> byEpoch = new LinkedHashMap<>();
            for (Ticket t : lane.queue) {
                if (t.state == State.NEW) {
                    t.state = State.CLAIMING;
                    byEpoch.computeIfAbsent(t.epoch, e -> new ArrayList<>()).add(t);
                    copies++;
                }
            }
            if (byEpoch.isEmpty()) {
                continue;
            }
            lane.claiming = true;
            for (List<Ticket> group : byEpoch.values()) {
                for (int from = 0; from < group.size(); from += MAX_COPIES_PER_CALL) {
                    List<Ticket> call = group.subList(from, Math.min(group.size(), from + MAX_COPIES_PER_CALL));
                    Ticket first = call.get(0);
                    Request r = script(claimSha, DedupScripts.CLAIM, first);
                    for (Ticket t : call) {
                        long s = t.sequence;
                        r.arg(t.decimal()).arg(s >>> 32).arg(s & 0xffffffffL).arg(t.claimValue);
                    }
                    add(requests, routing, parts, r, first, new Part(Part.CLAIM, new ArrayList<>(call), null));
                }
            }
        }
        if (!toCheck.isEmpty()) {
            Map<String, List<Ticket>> byOwner = new LinkedHashMap<>();
            for (Ticket t : toCheck) {
                t.state = State.CHECKING;
                byOwner.computeIfAbsent(owner(t.heldBy), o -> new ArrayList<>()).add(t);
            }
            toCheck.clear();
            byOwner.forEach((owner, tickets) -> {
                String key = keys.dedupOwner(owner);
                requests.add(Request.cmd(Command.EXISTS).arg(key));
                routing.add(key);
                parts.add(new Part(Part.CHECK, tickets, owner));
            });
        }
        for (Ticket t : toResolve) {
            t.state = State.RESOLVING;
            Request r = script(resolveSha, DedupScripts.RESOLVE, t);
            long s = t.sequence;
            r.arg(t.decimal()).arg(s >>> 32).arg(s & 0xffffffffL).arg(t.heldBy).arg(t.found ? "F" : "T")
                    .arg(t.claimValue);
            add(requests, routing, parts, r, t, new Part(Part.RESOLVE, List.of(t), null));
        }
        toResolve.clear();
        if (requests.isEmpty()) {
            return;
        }
        batchesInFlight++;
        redis.batch(requests, routing).onComplete(ar -> {
            synchronized (this) {
                batchesInFlight--;
                if (ar.succeeded()) {
                    answered(parts, ar.result());
                } else {
                    failed(parts, ar.cause());
                }
                flush();
            }
        });
    }

    private Request script(String sha, String text, Ticket t) {
        Request r = useEval ? Request.cmd(Command.EVAL).arg(text) : Request.cmd(Command.EVALSHA).arg(sha);
        return r.arg(2).arg(keys.dedup(t.deviceId, t.epoch)).arg(keys.dedupCommitted(t.deviceId, t.epoch))
                .arg(window).arg(ttl);
    }

    private void add(List<Request> requests, List<String> routing, List<Part> parts, Request r, Ticket t, Part part) {
        requests.add(r);
        routing.add(keys.dedup(t.deviceId, t.epoch));
        parts.add(part);
    }

    private static String owner(String claimValue) {
        int bar = claimValue.indexOf('|');
        return bar < 0 ? claimValue : claimValue.substring(0, bar);
    }

    private static long claimMillis(String claimValue) {
        String[] parts = claimValue.split("\\|");
        try {
            return parts.length > 1 ? Long.parseLong(parts[1]) : 0;
        } catch (NumberFormatException e) {
            return 0;
        }
    }

    private void answered(List<Part> parts, List<Response> answers) {
        if (unavailableSinceMillis != 0) {
            LOG.info("Duplicate removal: Redis answers again");
        }
        unavailableSinceMillis = 0;
        metrics.unavailable.set(0);
        backoffMillis = FIRST_BACKOFF_MS;
        useEval = false;
        Set<Lane> touched = new LinkedHashSet<>();
        Set<Lane> claimedLanes = new LinkedHashSet<>();
        List<Part> refused = new ArrayList<>();
        String refusal = null;
        for (int i = 0; i < parts.size(); i++) {
            Part part = parts.get(i);
            Response answer = answers.get(i);
            if (answer == null || answer.type() == io.vertx.redis.client.ResponseType.ERROR) {
                refused.add(part);
                if (answer != null && refusal == null) {
                    refusal = answer.toString();
                }
                continue;
            }
            switch (part.kind()) {
                case Part.COMMIT -> part.tickets().forEach(t -> liveClaims.remove(t.claimValue));
                case Part.CLAIM -> {
                    for (int j = 0; j < part.tickets().size(); j++) {
                        Ticket t = part.tickets().get(j);
                        claimed(t, answer.get(j).toString());
                        claimedLanes.add(t.lane);
                    }
                }
                case Part.CHECK -> {
                    boolean alive = answer.toInteger() != 0;
                    for (Ticket t : part.tickets()) {
                        if (alive) {
                            retryLater(t);
                        } else {
                            t.state = State.LOOKUP;
                            toLookUp.add(t);
                        }
                    }
                }
                default -> { // RESOLVE
                    Ticket t = part.tickets().get(0);
                    String result = answer.toString();
                    if (result.equals("D")) {
                        t.state = State.DUPLICATE;
                    } else if (result.equals("C")) {
                        t.state = State.CLAIMED;
                    } else {
                        t.state = State.NEW; // the claim changed meanwhile: check again
                        toClaim.add(t.lane);
                    }
                    touched.add(t.lane);
                }
            }
        }
        for (Lane lane : claimedLanes) {
            lane.claiming = false;
            pump(lane);
        }
        for (Lane lane : touched) {
            pump(lane);
        }
        if (!refused.isEmpty()) {
            failed(refused, new IllegalStateException("Redis refused a dedup call: " + refusal));
        }
    }

    private void claimed(Ticket t, String result) {
        switch (result) {
            case "C" -> t.state = State.CLAIMED;
            case "D" -> t.state = State.DUPLICATE;
            case "B" -> t.state = State.BEYOND;
            default -> {
                metrics.busy.increment();
                t.heldBy = result;
                if (owner(result).equals(token)) {
                    if (liveClaims.contains(result)) {
                        retryLater(t); // another copy in this process is being written: wait for its commit
                    } else {
                        t.state = State.LOOKUP; // a copy of ours that ended without a commit (e.g. written unchecked)
                        toLookUp.add(t);
                    }
                } else {
                    t.state = State.CHECK_OWNER;
                    toCheck.add(t);
                }
            }
        }
    }

    /** Busy with a live owner: claim again after a growing delay (20 ms to 1 s). */
    private void retryLater(Ticket t) {
        t.state = State.WAIT;
        long delay = Math.min(1_000, 20L << Math.min(6, t.rounds++));
        vertx.setTimer(delay, id -> {
            synchronized (this) {
                if (t.state == State.WAIT) {
                    t.state = State.NEW;
                    toClaim.add(t.lane);
                    flush();
                }
            }
        });
    }

    private void failed(List<Part> parts, Throwable cause) {
        String message = String.valueOf(cause.getMessage());
        if (message.contains("NOSCRIPT")) {
            useEval = true; // Redis lost its script cache (restart, failover): send the text once
        } else {
            metrics.redisFailures.increment();
            if (unavailableSinceMillis == 0) {
                unavailableSinceMillis = System.currentTimeMillis();
                metrics.unavailable.set(1);
                LOG.warnf("Duplicate removal: Redis unavailable (%s); numbered messages are %s", message,
                        hold() ? "held until it answers" : "written unchecked");
            }
            retryAtMillis = System.currentTimeMillis() + backoffMillis;
            scheduleRetry(backoffMillis);
            backoffMillis = Math.min(MAX_BACKOFF_MS, backoffMillis * 2);
        }
        Set<Lane> touched = new LinkedHashSet<>();
        for (Part part : parts) {
            switch (part.kind()) {
                case Part.COMMIT -> toCommit.addAll(part.tickets());
                case Part.CLAIM -> {
                    for (Ticket t : part.tickets()) {
                        // hold: claim again (the same claim value, so a claim that did land is recognised as ours)
                        t.state = hold() || useEval ? State.NEW : State.UNCHECKED;
                        touched.add(t.lane);
                    }
                }
                case Part.CHECK -> part.tickets().forEach(t -> {
                    t.state = State.CHECK_OWNER;
                    toCheck.add(t);
                });
                default -> part.tickets().forEach(t -> {
                    t.state = State.RESOLVE;
                    toResolve.add(t);
                });
            }
        }
        for (Lane lane : touched) {
            lane.claiming = false;
            toClaim.add(lane);
            pump(lane);
        }
    }

    private void scheduleRetry(long delay) {
        if (retryTimerSet) {
            return;
        }
        retryTimerSet = true;
        vertx.setTimer(delay, id -> {
            synchronized (this) {
                retryTimerSet = false;
                flush();
            }
        });
    }

    /** Under the lock: one Kafka lookup at a time, for every claim of a gone owner waiting for one. */
    private void startLookups() {
        if (lookupRunning || toLookUp.isEmpty()) {
            return;
        }
        lookupRunning = true;
        List<Ticket> batch = new ArrayList<>(toLookUp);
        toLookUp.clear();
        List<KafkaLookup.Wanted> wanted = new ArrayList<>();
        for (Ticket t : batch) {
            t.state = State.LOOKING;
            wanted.add(new KafkaLookup.Wanted(t.topic, t.deviceId, t.epoch, t.sequence, claimMillis(t.heldBy)));
        }
        if (lookupThread == null) {
            lookupThread = Executors.newSingleThreadExecutor(r -> {
                Thread thread = new Thread(r, "dedup-kafka-lookup");
                thread.setDaemon(true);
                return thread;
            });
            lookup = new KafkaLookup(kafkaConfig, config.lookupMargin(), config.lookupTimeout());
        }
        lookupThread.execute(() -> {
            Set<KafkaLookup.Wanted> found = null;
            Exception error = null;
            try {
                found = lookup.find(wanted);
            } catch (Exception e) {
                error = e;
            }
            synchronized (this) {
                lookupRunning = false;
                if (error != null) {
                    LOG.warnf("Duplicate removal: Kafka lookup of %d claim(s) of gone gateway processes failed (%s); "
                            + "retrying", batch.size(), error.toString());
                    vertx.setTimer(1_000, id -> {
                        synchronized (this) {
                            for (Ticket t : batch) {
                                t.state = State.LOOKUP;
                                toLookUp.add(t);
                            }
                            flush();
                        }
                    });
                    return;
                }
                for (int i = 0; i < batch.size(); i++) {
                    Ticket t = batch.get(i);
                    t.found = found.contains(wanted.get(i));
                    (t.found ? metrics.lookupFound : metrics.lookupNotFound).increment();
                    t.state = State.RESOLVE;
                    toResolve.add(t);
                }
                LOG.infof("Duplicate removal: looked up %d claim(s) of gone gateway processes in Kafka: %d found",
                        batch.size(), found.size());
                flush();
            }
        });
    }

    /** Proves this process alive: its claims are protected while the key lives. */
    private void renewOwner() {
        long started = System.nanoTime();
        redis.send(Request.cmd(Command.SET).arg(ownerKey).arg(connection.instanceId()).arg("PX").arg(ownerLeaseMillis))
                .onSuccess(r -> {
                    ownerRenewedNanos = started;
                    ownerRenewed = true;
                })
                .onFailure(e -> LOG.debugf("Duplicate removal: owner key not renewed: %s", e));
    }

    /** At shutdown: the commits still due are written within {@code timeout} (else their claims are looked up later). */
    public void close(Duration timeout) {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (System.nanoTime() < deadline) {
            synchronized (this) {
                if (toCommit.isEmpty() && batchesInFlight == 0) {
                    break;
                }
                flush();
            }
            try {
                TimeUnit.MILLISECONDS.sleep(10);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                break;
            }
        }
        if (lookupThread != null) {
            lookupThread.execute(lookup::close); // the consumer belongs to that thread
            lookupThread.shutdown();
        }
    }
}
