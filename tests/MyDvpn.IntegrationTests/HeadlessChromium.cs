using System.Diagnostics;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace MyDvpn.IntegrationTests;

/// <summary>
/// Debian's <c>chromium</c> (the package, nothing downloaded) running headless on one page, driven through its DevTools
/// protocol on a loopback port: the page keeps running, so a test sees what its own script does over time. Disposing it
/// kills chromium and deletes its profile directory, also when the test failed. Every wait is bounded.
/// </summary>
public sealed class HeadlessChromium : IAsyncDisposable
{
    public const string Executable = "/usr/bin/chromium";
    private static readonly TimeSpan StartWithin = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan CallWithin = TimeSpan.FromSeconds(30);

    private readonly Process process;
    private readonly string profile;
    private readonly ClientWebSocket socket = new();
    private readonly List<string> log = [];
    private int nextId;

    private HeadlessChromium(Process process, string profile)
    {
        this.process = process;
        this.profile = profile;
    }

    /// <summary>What chromium wrote on stderr (its last lines), for a failure's message.</summary>
    public string Log
    {
        get
        {
            lock (log)
                return string.Join('\n', log.TakeLast(30));
        }
    }

    /// <summary>Starts chromium on <paramref name="url"/> (a self-signed operator CA: certificate errors ignored) and attaches to its page.</summary>
    public static async Task<HeadlessChromium> OpenAsync(string url)
    {
        if (!File.Exists(Executable))
            throw new InvalidOperationException($"{Executable} is missing: install Debian's chromium package (apt-get install chromium)");
        var profile = Path.Combine(Path.GetTempPath(), $"mydvpn-chromium-{Guid.NewGuid():N}");
        Directory.CreateDirectory(profile);
        var start = new ProcessStartInfo(Executable)
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        // --no-sandbox: the tests run as root in CI, where chromium refuses to start sandboxed.
        foreach (var argument in new[]
                 {
                     "--headless=new", "--no-sandbox", "--disable-gpu", "--ignore-certificate-errors", "--no-first-run", "--disable-extensions",
                     "--window-size=1280,900", $"--user-data-dir={profile}", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", url,
                 })
            start.ArgumentList.Add(argument);
        var process = Process.Start(start) ?? throw new InvalidOperationException("chromium did not start");
        var chromium = new HeadlessChromium(process, profile);
        process.ErrorDataReceived += (_, e) => chromium.Record(e.Data);
        process.OutputDataReceived += (_, e) => chromium.Record(e.Data);
        process.BeginErrorReadLine();
        process.BeginOutputReadLine();
        try
        {
            await chromium.AttachAsync();
            return chromium;
        }
        catch
        {
            await chromium.DisposeAsync();
            throw;
        }
    }

    /// <summary>
    /// The DOM of <paramref name="url"/> as chromium's <c>--dump-dom</c> prints it once the page's scripts ran for
    /// <paramref name="virtualTime"/> of virtual time (its timers and fetches); chromium is killed and its profile deleted
    /// after, or after <see cref="StartWithin"/> if it did not finish.
    /// </summary>
    public static async Task<string> DumpDomAsync(string url, int virtualTime = 5000)
    {
        if (!File.Exists(Executable))
            throw new InvalidOperationException($"{Executable} is missing: install Debian's chromium package (apt-get install chromium)");
        var profile = Path.Combine(Path.GetTempPath(), $"mydvpn-chromium-{Guid.NewGuid():N}");
        Directory.CreateDirectory(profile);
        var start = new ProcessStartInfo(Executable) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var argument in new[]
                 {
                     "--headless=new", "--no-sandbox", "--disable-gpu", "--ignore-certificate-errors", "--no-first-run", "--disable-extensions",
                     $"--user-data-dir={profile}", $"--virtual-time-budget={virtualTime}", "--dump-dom", url,
                 })
            start.ArgumentList.Add(argument);
        using var process = Process.Start(start) ?? throw new InvalidOperationException("chromium did not start");
        var chromium = new HeadlessChromium(process, profile);
        process.ErrorDataReceived += (_, e) => chromium.Record(e.Data);
        process.BeginErrorReadLine();
        try
        {
            var dom = process.StandardOutput.ReadToEndAsync();
            using var within = new CancellationTokenSource(StartWithin);
            try
            {
                await process.WaitForExitAsync(within.Token);
            }
            catch (OperationCanceledException)
            {
                throw new TimeoutException($"chromium --dump-dom {url} did not finish within {StartWithin.TotalSeconds} s:\n{chromium.Log}");
            }
            if (process.ExitCode != 0)
                throw new InvalidOperationException($"chromium --dump-dom exited with {process.ExitCode}:\n{chromium.Log}");
            return await dom;
        }
        finally
        {
            await chromium.DisposeAsync();
        }
    }

    private void Record(string? line)
    {
        if (line is null)
            return;
        lock (log)
            log.Add(line);
    }

    /// <summary>Reads the DevTools port chromium chose (its profile's DevToolsActivePort) and connects to the page's socket.</summary>
    private async Task AttachAsync()
    {
        var deadline = DateTime.UtcNow + StartWithin;
        var portFile = Path.Combine(profile, "DevToolsActivePort");
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        while (true)
        {
            if (process.HasExited)
                throw new InvalidOperationException($"chromium exited with {process.ExitCode} before it was ready:\n{Log}");
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"chromium did not open its page within {StartWithin.TotalSeconds} s:\n{Log}");
            try
            {
                if (File.Exists(portFile) && File.ReadAllLines(portFile) is [var port, ..] && port.Length > 0)
                {
                    var targets = JsonNode.Parse(await http.GetStringAsync($"http://127.0.0.1:{port}/json/list"))!.AsArray();
                    if (targets.FirstOrDefault(t => (string?)t!["type"] == "page") is { } page)
                    {
                        using var connect = new CancellationTokenSource(CallWithin);
                        await socket.ConnectAsync(new Uri((string)page["webSocketDebuggerUrl"]!), connect.Token);
                        return;
                    }
                }
            }
            catch (Exception ex) when (ex is IOException or HttpRequestException or TaskCanceledException)
            {
                // Not listening yet, or the file half written.
            }
            await Task.Delay(200);
        }
    }

    /// <summary>The value of a JavaScript expression on the page (returned by value: a string, number, bool or JSON).</summary>
    public async Task<JsonNode?> EvaluateAsync(string expression)
    {
        var result = await CallAsync("Runtime.evaluate", new JsonObject { ["expression"] = expression, ["returnByValue"] = true });
        if (result["exceptionDetails"] is { } exception)
            throw new InvalidOperationException($"the page threw evaluating {expression}: {exception.ToJsonString()}");
        return result["result"]?["value"]?.DeepClone();
    }

    /// <summary>Polls <paramref name="expression"/> until it is <c>true</c> on the page, for at most <paramref name="within"/>.</summary>
    public async Task WaitUntilAsync(string expression, string what, TimeSpan within)
    {
        var deadline = DateTime.UtcNow + within;
        while (true)
        {
            if (await EvaluateAsync(expression) is JsonValue value && value.TryGetValue<bool>(out var holds) && holds)
                return;
            if (DateTime.UtcNow > deadline)
            {
                var text = await EvaluateAsync("document.body ? document.body.innerText : ''");
                throw new TimeoutException($"timed out after {within.TotalSeconds} s waiting until {what}; the page shows:\n{text}");
            }
            await Task.Delay(250);
        }
    }

    /// <summary>A PNG of what the page shows now (1280×900), written to <paramref name="path"/>.</summary>
    public async Task ScreenshotAsync(string path)
    {
        var result = await CallAsync("Page.captureScreenshot", new JsonObject { ["format"] = "png" });
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        await File.WriteAllBytesAsync(path, Convert.FromBase64String((string)result["data"]!));
    }

    private async Task<JsonNode> CallAsync(string method, JsonObject parameters)
    {
        var id = Interlocked.Increment(ref nextId);
        var request = new JsonObject { ["id"] = id, ["method"] = method, ["params"] = parameters };
        using var within = new CancellationTokenSource(CallWithin);
        await socket.SendAsync(Encoding.UTF8.GetBytes(request.ToJsonString()), WebSocketMessageType.Text, endOfMessage: true, within.Token);
        var buffer = new byte[64 * 1024];
        while (true)
        {
            using var message = new MemoryStream();
            WebSocketReceiveResult received;
            do
            {
                received = await socket.ReceiveAsync(buffer, within.Token);
                if (received.MessageType == WebSocketMessageType.Close)
                    throw new InvalidOperationException($"chromium closed its DevTools socket during {method}:\n{Log}");
                message.Write(buffer, 0, received.Count);
            }
            while (!received.EndOfMessage);
            var answer = JsonNode.Parse(message.ToArray())!;
            // Events (no id) and answers to other calls pass by.
            if ((int?)answer["id"] != id)
                continue;
            if (answer["error"] is { } error)
                throw new InvalidOperationException($"chromium refused {method}: {error.ToJsonString()}");
            return answer["result"]!;
        }
    }

    public async ValueTask DisposeAsync()
    {
        socket.Abort();
        socket.Dispose();
        try
        {
            if (!process.HasExited)
                process.Kill(entireProcessTree: true);
            using var exited = new CancellationTokenSource(TimeSpan.FromSeconds(15));
            await process.WaitForExitAsync(exited.Token);
        }
        catch (Exception ex) when (ex is InvalidOperationException or OperationCanceledException or System.ComponentModel.Win32Exception)
        {
            // Gone already, or stuck: the profile is deleted below as far as it can be.
        }
        process.Dispose();
        for (var attempt = 0; attempt < 5 && Directory.Exists(profile); attempt++)
        {
            try
            {
                Directory.Delete(profile, recursive: true);
            }
            catch (IOException)
            {
                // A child process still writing its last file.
                await Task.Delay(300);
            }
        }
    }
}
