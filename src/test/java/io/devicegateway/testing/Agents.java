package io.devicegateway.testing;

import java.net.URL;
import java.util.HexFormat;
import java.util.concurrent.TimeUnit;

import io.devicegateway.command.AgentTokens;
import io.devicegateway.v1.DeviceGatewayGrpc;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Metadata;
import io.grpc.stub.MetadataUtils;

/** Test agents: tokens configured on the gateway and gRPC stubs that present them. */
public final class Agents {

    /** May address every device. */
    public static final String OPS_TOKEN = "ops-secret-token";
    /** May address only devices whose id starts with "truck-". */
    public static final String FLEET_TOKEN = "fleet-secret-token";

    private Agents() {
    }

    public static String tokensConfig() {
        return "ops:" + hash(OPS_TOKEN) + ",fleet:" + hash(FLEET_TOKEN) + ":truck-";
    }

    public static String hash(String token) {
        return HexFormat.of().formatHex(AgentTokens.sha256(token));
    }

    public static ManagedChannel channel(int port) {
        return ManagedChannelBuilder.forAddress("127.0.0.1", port).usePlaintext().build();
    }

    public static ManagedChannel channel(URL url) {
        return channel(url.getPort());
    }

    /** A blocking stub sending {@code authorization: Bearer <token>}; no header when token is null. */
    public static DeviceGatewayGrpc.DeviceGatewayBlockingStub stub(ManagedChannel channel, String token) {
        DeviceGatewayGrpc.DeviceGatewayBlockingStub stub = DeviceGatewayGrpc.newBlockingStub(channel)
                .withDeadlineAfter(30, TimeUnit.SECONDS);
        if (token == null) {
            return stub;
        }
        Metadata headers = new Metadata();
        headers.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), "Bearer " + token);
        return stub.withInterceptors(MetadataUtils.newAttachHeadersInterceptor(headers));
    }

    /** A blocking DeviceRegistry stub sending {@code authorization: Bearer <token>}; no header when token is null. */
    public static io.devicegateway.v1.DeviceRegistryGrpc.DeviceRegistryBlockingStub registry(ManagedChannel channel,
            String token) {
        io.devicegateway.v1.DeviceRegistryGrpc.DeviceRegistryBlockingStub stub = io.devicegateway.v1.DeviceRegistryGrpc
                .newBlockingStub(channel).withDeadlineAfter(30, TimeUnit.SECONDS);
        if (token == null) {
            return stub;
        }
        Metadata headers = new Metadata();
        headers.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), "Bearer " + token);
        return stub.withInterceptors(MetadataUtils.newAttachHeadersInterceptor(headers));
    }
}
