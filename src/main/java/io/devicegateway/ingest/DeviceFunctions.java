package io.devicegateway.ingest;

import java.nio.charset.StandardCharsets;
import java.util.AbstractMap;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.regex.Pattern;

import jakarta.enterprise.inject.Any;
import jakarta.enterprise.inject.Instance;
import jakarta.inject.Singleton;

import org.apache.kafka.common.header.internals.RecordHeaders;
import org.jboss.logging.Logger;

import com.google.protobuf.UnsafeByteOperations;

import io.devicegateway.contract.DeviceTopic;
import io.devicegateway.contract.Envelopes;
import io.devicegateway.contract.RejectReason;
import io.devicegateway.contract.TopicKind;
import io.devicegateway.function.DeviceFunction;
import io.devicegateway.function.DeviceMessageView;
import io.devicegateway.function.Outcome;
import io.devicegateway.platform.mqtt.InboundMessage;
import io.devicegateway.platform.mqtt.TopicFilters;
import io.devicegateway.v1.DeviceMessage;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.MeterRegistry;

/**
 * Runs the user's {@link DeviceFunction} beans on each device message (README: Device functions). Which functions
 * apply to which kind is decided once at startup; per message only the stream filters of that kind's functions are
 * matched, and a view is built only for a function that applies. No functions: one array-length check.
 */
@Singleton
public class DeviceFunctions {

    private static final Logger LOG = Logger.getLogger(DeviceFunctions.class);
    private static final Pattern NAME = Pattern.compile("[A-Za-z0-9._-]{1,64}");

    /** Why the chain stopped a message: dropped, or to be dead-lettered with a reason. */
    static final class Stop {
        static final Stop DROPPED = new Stop(null, null, null);
        final String reason;
        final String function;
        final String error;

        Stop(String reason, String function, String error) {
            this.reason = reason;
            this.function = function;
            this.error = error;
        }
    }

    private static final class Entry {
        final DeviceFunction function;
        final String name;
        final String[] streams;
        final boolean everyStream;
        final Counter filtered;
        final Counter failed;
        final AtomicBoolean warned = new AtomicBoolean();

        Entry(DeviceFunction function, String name, List<String> streams, MeterRegistry registry) {
            this.function = function;
            this.name = name;
            this.streams = streams.toArray(String[]::new);
            this.everyStream = streams.contains("#");
            this.filtered = Counter.builder("gateway.functions.filtered").tag("function", name)
                    .description("Device messages a function dropped: acknowledged, not written").register(registry);
            this.failed = Counter.builder("gateway.functions.failed").tag("function", name)
                    .description("Device messages a function failed on (dead-lettered as function-failed)")
                    .register(registry);
        }

        boolean matches(String stream) {
            if (everyStream) {
                return true;
            }
            if (stream.isEmpty()) {
                return false; // only "#" covers a message without a stream
            }
            for (String filter : streams) {
                if (TopicFilters.matches(filter, stream)) {
                    return true;
                }
            }
            return false;
        }
    }

    private final Entry[] telemetry;
    private final Entry[] events;
    private final List<String> names;

    DeviceFunctions(@Any Instance<DeviceFunction> beans, MeterRegistry registry) {
        List<DeviceFunction> enabled = new ArrayList<>();
        for (DeviceFunction f : beans) {
            if (f.enabled()) {
                enabled.add(f);
            }
        }
        List<Entry> all = new ArrayList<>();
        Set<String> seen = new HashSet<>();
        for (DeviceFunction f : enabled) {
            String name = f.name();
            if (name == null || !NAME.matcher(name).matches()) {
                throw new IllegalStateException("device function " + f.getClass().getName() + ": name '" + name
                        + "' must match " + NAME.pattern());
            }
            if (!seen.add(name)) {
                throw new IllegalStateException("two device functions are named '" + name + "'; names must be unique");
            }
            List<String> streams = f.streams();
            if (streams == null || streams.isEmpty()) {
                throw new IllegalStateException("device function " + name + " declares no streams (use \"#\" for all)");
            }
            for (String filter : streams) {
                if (!validFilter(filter)) {
                    throw new IllegalStateException("device function " + name + ": bad stream filter '" + filter + "'");
                }
            }
            if (f.kinds() == null || f.kinds().isEmpty()) {
                throw new IllegalStateException("device function " + name + " declares no kinds");
            }
            all.add(new Entry(f, name, streams, registry));
        }
        // declared order, ties by name: independent of bean discovery order
        all.sort(Comparator.comparingInt((Entry e) -> e.function.order()).thenComparing(e -> e.name));
        List<Entry> t = new ArrayList<>();
        List<Entry> e = new ArrayList<>();
        for (Entry entry : all) {
            Set<DeviceFunction.Kind> kinds = entry.function.kinds();
            if (kinds.contains(DeviceFunction.Kind.TELEMETRY)) {
                t.add(entry);
            }
            if (kinds.contains(DeviceFunction.Kind.EVENTS)) {
                e.add(entry);
            }
        }
        this.telemetry = t.toArray(Entry[]::new);
        this.events = e.toArray(Entry[]::new);
        this.names = all.stream().map(x -> x.name + " (order " + x.function.order() + ")").toList();
        if (!names.isEmpty()) {
            LOG.infof("Device functions, in the order they run: %s", names);
        }
    }

    /** MQTT filter rules: {@code +} a whole level, {@code #} only as the whole last level. */
    static boolean validFilter(String filter) {
        if (filter == null || filter.isEmpty()) {
            return false;
        }
        String[] levels = filter.split("/", -1);
        for (int i = 0; i < levels.length; i++) {
            String level = levels[i];
            if (level.contains("#") && (!level.equals("#") || i != levels.length - 1)) {
                return false;
            }
            if (level.contains("+") && !level.equals("+")) {
                return false;
            }
        }
        return true;
    }

    /** The enabled functions in run order, for logs and tests. */
    List<String> names() {
        return names;
    }

    /**
     * Runs the functions that apply, in order, changing the envelope and headers as they say.
     *
     * @return null to write the message (possibly changed), {@link Stop#DROPPED}, or a dead-letter stop
     */
    Stop run(InboundMessage message, DeviceTopic topic, DeviceMessage.Builder envelope, RecordHeaders headers) {
        Entry[] chain = topic.kind() == TopicKind.TELEMETRY ? telemetry : events;
        if (chain.length == 0) {
            return null;
        }
        List<Map.Entry<String, String>> userProperties = null;
        for (Entry entry : chain) {
            if (!entry.matches(topic.subtopic())) {
                continue;
            }
            if (userProperties == null) {
                userProperties = userProperties(message);
            }
            Outcome outcome;
            try {
                outcome = entry.function.apply(view(message, topic, envelope, userProperties));
                if (outcome == null) {
                    throw new NullPointerException("device function " + entry.name + " returned no outcome");
                }
            } catch (Throwable t) {
                if (t instanceof VirtualMachineError && !(t instanceof StackOverflowError)) {
                    throw (VirtualMachineError) t; // out of memory: nothing sensible to do per message
                }
                failed(entry, t);
                return new Stop(RejectReason.FUNCTION_FAILED.code(), entry.name, t.getClass().getName());
            }
            if (outcome instanceof Outcome.Replace replace) {
                apply(replace, envelope, headers);
            } else if (outcome instanceof Outcome.Drop) {
                entry.filtered.increment();
                return Stop.DROPPED;
            } else if (outcome instanceof Outcome.DeadLetter dead) {
                return new Stop(dead.reason(), entry.name, null);
            }
        }
        return null;
    }

    private void failed(Entry entry, Throwable t) {
        entry.failed.increment();
        // the class only at WARN: an exception's message may quote payload bytes
        if (entry.warned.compareAndSet(false, true)) {
            LOG.warnf("Device function %s failed (%s); its messages are dead-lettered as function-failed. Logged "
                    + "once; DEBUG on %s shows every failure", entry.name, t.getClass().getName(),
                    DeviceFunctions.class.getName());
        }
        if (LOG.isDebugEnabled()) {
            LOG.debugf(t, "Device function %s failed", entry.name);
        }
    }

    private static DeviceMessageView view(InboundMessage message, DeviceTopic topic, DeviceMessage.Builder envelope,
            List<Map.Entry<String, String>> userProperties) {
        DeviceMessageView.Builder view = DeviceMessageView.builder(topic.deviceId(),
                topic.kind() == TopicKind.TELEMETRY ? DeviceFunction.Kind.TELEMETRY : DeviceFunction.Kind.EVENTS,
                topic.subtopic(), envelope.getPayload().asReadOnlyByteBuffer())
                .contentType(envelope.getContentType()).userProperties(userProperties)
                .receivedAtMillis(message.receivedAtMillis()).mqttTopic(message.topic());
        if (envelope.hasSequence()) {
            view.sequence(envelope.getSequence(), envelope.getSequenceEpoch());
        }
        return view.build();
    }

    private static List<Map.Entry<String, String>> userProperties(InboundMessage message) {
        List<Map.Entry<String, String>> list = new ArrayList<>(2);
        message.forEachUserProperty((k, v) -> list.add(new AbstractMap.SimpleImmutableEntry<>(k, v)));
        return list.isEmpty() ? List.of() : Collections.unmodifiableList(list);
    }

    private static void apply(Outcome.Replace replace, DeviceMessage.Builder envelope, RecordHeaders headers) {
        byte[] payload = replace.newPayload();
        if (payload != null) {
            envelope.setPayload(UnsafeByteOperations.unsafeWrap(payload));
            // the device's payload format indicator described the old bytes
            envelope.clearPayloadUtf8();
            headers.remove(Envelopes.HEADER_PAYLOAD_FORMAT);
        }
        String contentType = replace.newContentType();
        if (contentType != null) {
            envelope.setContentType(contentType);
            headers.remove(Envelopes.HEADER_CONTENT_TYPE);
            headers.add(Envelopes.HEADER_CONTENT_TYPE, contentType.getBytes(StandardCharsets.UTF_8));
        }
        if (replace.setsSequence()) {
            envelope.setSequence(replace.newSequence());
            if (replace.setsEpoch()) {
                envelope.setSequenceEpoch(replace.newSequenceEpoch());
            }
        }
        for (Outcome.Header h : replace.extraHeaders()) {
            headers.add(h.name(), h.value().getBytes(StandardCharsets.UTF_8));
        }
    }
}
