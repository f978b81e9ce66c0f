package io.devicegateway.bench;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;

import com.google.common.util.concurrent.FutureCallback;
import com.google.common.util.concurrent.Futures;
import com.google.common.util.concurrent.MoreExecutors;
import com.google.protobuf.ByteString;

import io.devicegateway.testing.Agents;
import io.devicegateway.testing.DeviceAgent;
import io.devicegateway.testing.GatewayProcess;
import io.devicegateway.testing.LocalServers;
import io.devicegateway.v1.DeviceGatewayGrpc;
import io.devicegateway.v1.GetSessionRequest;
import io.devicegateway.v1.SendEventRequest;
import io.devicegateway.v1.SendEventResponse;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.stub.MetadataUtils;

/**
 * SendEvent under load: agents call the gateway over gRPC (bearer token, HTTP/2 on the one port) to online
 * devices; each call completes when the broker acknowledged the QoS 1 publish (DELIVERED). Open loop at a fixed
 * rate, or closed loop with a fixed number of concurrent calls.
 */
final class SendEventBench {

    record Result(String name, int rate, int concurrency, long calls, long ok, long errors, double seconds,
            Stats latency, Map<String, Long> cpu) {

        String json() {
            return String.format(Locale.ROOT,
                    "{\"scenario\":\"%s\",\"path\":\"agent-grpc->gateway->broker\",\"rate\":%d,\"concurrency\":%d,"
                            + "\"calls\":%d,\"delivered\":%d,\"errors\":%d,\"seconds\":%.3f,\"throughput_req_s\":%.0f,"
                            + "\"latency_ms\":%s,\"cpu_ms\":%s}",
                    name, rate, concurrency, calls, ok, errors, seconds, ok / seconds, latency.json(),
                    Bench.cpuJson(cpu));
        }
    }

    private SendEventBench() {
    }

    static List<DeviceAgent> onlineDevices(LocalServers servers, GatewayProcess gateway, String runId, int count) {
        List<DeviceAgent> devices = new ArrayList<>();
        for (int i = 0; i < count; i++) {
            devices.add(new DeviceAgent(runId + "-dev" + i, servers.mosquitto.port).connect());
        }
        ManagedChannel channel = Agents.channel(gateway.httpPort);
        try {
            var stub = Agents.stub(channel, Agents.OPS_TOKEN);
            for (DeviceAgent d : devices) {
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
                while (!online(stub, d.deviceId) && System.nanoTime() < deadline) {
                    LocalServers.pause(50);
                }
            }
        } finally {
            channel.shutdownNow();
        }
        return devices;
    }

    private static boolean online(DeviceGatewayGrpc.DeviceGatewayBlockingStub stub, String id) {
        try {
            return stub.getSession(GetSessionRequest.newBuilder().setDeviceId(id).build()).getOnline();
        } catch (RuntimeException notYet) {
            return false;
        }
    }

    /**
     * @param rate        calls per second (open loop), or 0 for closed loop
     * @param concurrency outstanding calls allowed (the closed loop keeps exactly this many going)
     */
    static Result run(String name, LocalServers servers, GatewayProcess gateway, List<DeviceAgent> devices,
            int rate, int concurrency, long calls) {
        ManagedChannel channel = Agents.channel(gateway.httpPort);
        Metadata headers = new Metadata();
        headers.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), "Bearer " + Agents.OPS_TOKEN);
        DeviceGatewayGrpc.DeviceGatewayFutureStub stub = DeviceGatewayGrpc.newFutureStub(channel)
                .withInterceptors(MetadataUtils.newAttachHeadersInterceptor(headers));
        Stats latency = new Stats();
        AtomicLong ok = new AtomicLong();
        AtomicLong errors = new AtomicLong();
        Semaphore window = new Semaphore(concurrency);
        Map<String, Long> cpuBefore = Bench.cpu(servers, gateway.pid());
        ByteString payload = ByteString.copyFrom(new byte[100]);
        long start = System.nanoTime();
        for (long i = 0; i < calls; i++) {
            if (rate > 0) {
                long wait = start + i * 1_000_000_000L / rate - System.nanoTime();
                if (wait > 0) {
                    LockSupport.parkNanos(wait); // pacing the load
                }
            }
            try {
                if (!window.tryAcquire(30, TimeUnit.SECONDS)) {
                    errors.incrementAndGet();
                    continue;
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                break;
            }
            DeviceAgent device = devices.get((int) (i % devices.size()));
            long sent = System.nanoTime();
            Futures.addCallback(stub.withDeadlineAfter(30, TimeUnit.SECONDS).sendEvent(SendEventRequest.newBuilder()
                    .setDeviceId(device.deviceId).setName("set").setPayload(payload).build()),
                    new FutureCallback<SendEventResponse>() {
                        @Override
                        public void onSuccess(SendEventResponse r) {
                            latency.add(System.nanoTime() - sent);
                            ok.incrementAndGet();
                            window.release();
                        }

                        @Override
                        public void onFailure(Throwable t) {
                            if (errors.incrementAndGet() <= 3) {
                                System.err.println("bench: SendEvent failed: " + t);
                            }
                            window.release();
                        }
                    }, MoreExecutors.directExecutor());
        }
        try {
            window.tryAcquire(concurrency, 60, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        double seconds = (System.nanoTime() - start) / 1e9;
        Map<String, Long> cpu = Bench.cpu(servers, gateway.pid());
        cpu.replaceAll((k, v) -> v - cpuBefore.get(k));
        channel.shutdownNow();
        return new Result(name, rate, concurrency, calls, ok.get(), errors.get(), seconds, latency, cpu);
    }
}
