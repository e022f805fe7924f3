using Grpc.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using MyDvpn.Security;

namespace MyDvpn.BaseNode.Web;

/// <summary>
/// The BaseNode's read-only web topology page on <c>--web</c> (<see cref="WebSettings"/>): <c>/</c> (HTML, script and style
/// embedded in this assembly, nothing fetched from elsewhere) and <c>/api/topology</c> (<see cref="TopologyView"/> as JSON),
/// which the page polls. Every request needs an admin credential: a login token of <see cref="WebTokens"/> (<c>mydvpn admin
/// web-token</c>; as <c>?token=</c> once, which sets an HttpOnly, Secure, SameSite=Strict cookie and redirects to the address
/// without it, or as <c>Authorization: Bearer</c>), or an admin certificate presented in the TLS handshake. Without one: 401
/// saying how to get one.
/// </summary>
public static class TopologyPage
{
    public const string CookieName = "mydvpn_web";
    public const string TopologyPath = "/api/topology";

    /// <summary>How long a topology request waits for the directory and the SuperNodes, in all.</summary>
    private static readonly TimeSpan TopologyWithin = TimeSpan.FromSeconds(10);

    private static readonly (string Path, string Resource, string ContentType)[] Assets =
    [
        ("/", "index.html", "text/html; charset=utf-8"),
        ("/topology.js", "topology.js", "text/javascript; charset=utf-8"),
        ("/topology.css", "topology.css", "text/css; charset=utf-8"),
    ];

    public static void Map(WebApplication app, WebSettings web)
    {
        if (web.Address is not { } address)
            return;
        var host = $"*:{address.Port}";
        var tokens = app.Services.GetRequiredService<WebTokens>();
        var tls = app.Services.GetRequiredService<TlsMaterial>();
        var topology = app.Services.GetRequiredService<TopologyQueries>();
        var logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger(typeof(TopologyPage));
        foreach (var (path, resource, contentType) in Assets)
        {
            var body = Resource(resource);
            app.MapGet(path, (HttpContext context) =>
            {
                if (Authenticate(context, tokens, tls, logger) is { } refused)
                    return refused;
                // The token given in the address becomes the cookie, and the address loses it (history, screenshots, Referer).
                if (path == "/" && context.Request.Query.ContainsKey("token"))
                    return Results.Redirect("/", permanent: false, preserveMethod: false);
                Secure(context.Response);
                return Results.Bytes(body, contentType);
            }).RequireHost(host);
        }
        app.MapGet(TopologyPath, async (HttpContext context) =>
        {
            if (Authenticate(context, tokens, tls, logger) is { } refused)
                return refused;
            Secure(context.Response);
            using var within = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted);
            within.CancelAfter(TopologyWithin);
            try
            {
                var view = await topology.Topology(DateTimeOffset.UtcNow, within.Token);
                return Results.Text(view.ToJson(), "application/json; charset=utf-8");
            }
            catch (RpcException ex)
            {
                // The directory's regions are the one part the page cannot do without.
                return Results.Text($"the directory did not answer: {ex.Status.Detail}", "text/plain; charset=utf-8", statusCode: StatusCodes.Status503ServiceUnavailable);
            }
            catch (OperationCanceledException) when (!context.RequestAborted.IsCancellationRequested)
            {
                return Results.Text($"the directory did not answer within {TopologyWithin.TotalSeconds:0} s", "text/plain; charset=utf-8",
                    statusCode: StatusCodes.Status503ServiceUnavailable);
            }
        }).RequireHost(host);
    }

    /// <summary>
    /// Null when the request carries an admin credential (an admin certificate, a valid token in the address, the
    /// Authorization header or the cookie, in that order; a token in the address is set as the cookie); else the 401.
    /// </summary>
    public static IResult? Authenticate(HttpContext context, WebTokens tokens, TlsMaterial tls, ILogger logger)
    {
        if (context.Connection.ClientCertificate is { } certificate)
        {
            if (tls.ValidatePeer(certificate, CertificateKind.Admin, out var reason))
                return null;
            return Unauthorized(context, $"the certificate presented is not an admin certificate of this network's CA ({reason})");
        }
        var request = context.Request;
        string? token = null;
        var from = "";
        if (request.Query.TryGetValue("token", out var query))
            (token, from) = (query.ToString(), "the token in the address");
        else if (request.Headers.Authorization.ToString() is { Length: > 0 } authorization)
        {
            if (!authorization.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
                return Unauthorized(context, "the Authorization header is not `Bearer TOKEN`");
            (token, from) = (authorization["Bearer ".Length..].Trim(), "the bearer token");
        }
        else if (request.Cookies.TryGetValue(CookieName, out var cookie))
            (token, from) = (cookie, "the login cookie");
        if (token is null)
        {
            return Unauthorized(context, "no admin credential was presented");
        }
        if (!tokens.TryVerify(token, out var claims, out var problem))
        {
            logger.LogInformation("Web page request {Path} from {Remote} refused: {Source} is not valid: {Problem}",
                request.Path.Value, context.Connection.RemoteIpAddress, from, problem);
            if (from == "the login cookie")
                context.Response.Cookies.Delete(CookieName, CookieOptions(DateTimeOffset.UnixEpoch));
            return Unauthorized(context, $"{from} is not valid: {problem}");
        }
        if (from == "the token in the address")
        {
            context.Response.Cookies.Append(CookieName, token, CookieOptions(claims.ExpiresAt));
            logger.LogInformation("Web page opened by {Admin} from {Remote} with a token valid until {ExpiresAt:u}",
                claims.Admin, context.Connection.RemoteIpAddress, claims.ExpiresAt);
        }
        return null;
    }

    private static CookieOptions CookieOptions(DateTimeOffset expires) => new()
    {
        HttpOnly = true,
        Secure = true,
        SameSite = SameSiteMode.Strict,
        Path = "/",
        Expires = expires,
    };

    private static IResult Unauthorized(HttpContext context, string why)
    {
        Secure(context.Response);
        context.Response.Headers.WWWAuthenticate = "Bearer realm=\"mydvpn\"";
        return Results.Text(
            $"401 Unauthorized: the myDvpn topology page needs an admin credential, and {why}.\n"
            + "Make a login token with `mydvpn admin web-token` (it prints the address to open, with ?token=), "
            + "send it as `Authorization: Bearer TOKEN`, or present an admin certificate (`mydvpn ca issue --role admin`).\n",
            "text/plain; charset=utf-8", statusCode: StatusCodes.Status401Unauthorized);
    }

    /// <summary>Nothing is cached, framed or loaded from anywhere but the page's own origin.</summary>
    private static void Secure(HttpResponse response)
    {
        var headers = response.Headers;
        headers.CacheControl = "no-store";
        headers.XContentTypeOptions = "nosniff";
        headers.XFrameOptions = "DENY";
        headers["Referrer-Policy"] = "no-referrer";
        headers.ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
                                        + "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
    }

    private static byte[] Resource(string name)
    {
        var assembly = typeof(TopologyPage).Assembly;
        var fullName = $"MyDvpn.BaseNode.Web.{name}";
        using var stream = assembly.GetManifestResourceStream(fullName)
                           ?? throw new InvalidOperationException($"the embedded resource {fullName} is missing from {assembly.GetName().Name}");
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    }
}
