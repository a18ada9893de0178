#!/usr/bin/env python3
"""Every endpoint of `tiledraw serve` through a real HTTP client, against the
bundled models: the A1111 fields and answers, the images against what
`tiledraw generate` draws from the same settings, every refusal with its
status and the field it names, authentication, the queue, interrupt, time
limit, a client that goes away, and files written only where told.

    api_test.py TILEDRAW_BINARY MODELS_DIR WORK_DIR"""
import base64
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Server, check, failures, image_pixels, png_text, wait_until  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from png_pixels import read_png  # noqa: E402
from safetensors_cross_check import write_file  # noqa: E402

TILEDRAW, MODELS, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
SD = os.path.join(MODELS, "fashion-sd-8bit-s.safetensors")
DIT = os.path.join(MODELS, "fashion-dit-8bit-s.safetensors")
shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
def generate(name, *flags):
    """The CLI's images for the same settings: a list of (w, h, c, pixels)."""
    out = os.path.join(WORK, name + ".png")
    subprocess.run([TILEDRAW, "generate", "-q", "-o", out, *flags], check=True)
    batch = [os.path.join(WORK, f) for f in sorted(os.listdir(WORK)) if f.startswith(name + "-") and f.endswith(".png")]
    return [read_png(p) for p in batch] if batch else [read_png(out)]


def write_lora(path, metadata):
    """A kohya-ss adapter for the bundled text-to-image model, random: two
    layers of the UNet's first attention block and one of the text encoder."""
    shapes = {"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q": (64, 64),
              "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_v": (64, 128),
              "lora_te_text_model_encoder_layers_0_self_attn_q_proj": (128, 128)}
    values = random.Random(path)
    tensors = {}
    for layer, (rows, columns) in shapes.items():
        tensors[layer + ".lora_down.weight"] = ("F32", [4, columns], [values.gauss(0, 0.5) for _ in range(4 * columns)])
        tensors[layer + ".lora_up.weight"] = ("F32", [rows, 4], [values.gauss(0, 0.5) for _ in range(rows * 4)])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_file(path, tensors, metadata)


def expect_error(server, path, body, status, words, raw=None):
    got, _, answer = server.post(path, body, raw=raw)
    detail = answer.get("detail", "") if isinstance(answer, dict) else str(answer)
    check(got == status and all(w in detail for w in words),
          f"{path} {str(body if raw is None else raw[:40])[:70]!r}: {status} naming {words} (got {got}: {detail})")


def main():
    with Server(TILEDRAW, "-m", SD, "-m", DIT, "--max-size", "256", "--max-steps", "200", "--max-images", "8",
                "--max-body", "1M") as s:
        status, _, health = s.get("/health")
        check(status == 200 and health["status"] == "ok" and health["model"] == "fashion-sd-8bit-s.safetensors",
              "GET /health: ok, the first model current")
        status, headers, page = s.get("/")
        check(status == 200 and headers["Content-Type"].startswith("text/html") and "<html" in page.lower(),
              "GET /: the web page")
        status, _, models = s.get("/sdapi/v1/sd-models")
        check(status == 200 and [m["title"] for m in models] == ["fashion-sd-8bit-s.safetensors", "fashion-dit-8bit-s.safetensors"]
              and models[0]["model_name"] == "fashion-sd-8bit-s", "GET /sdapi/v1/sd-models: both models, A1111's fields")
        status, _, samplers = s.get("/sdapi/v1/samplers")
        names = [x["name"] for x in samplers]
        check(status == 200 and "Euler a" in names and "DPM++ 2M" in names and len(names) == 10,
              "GET /sdapi/v1/samplers: A1111's labels for the 10 samplers")
        status, _, schedulers = s.get("/sdapi/v1/schedulers")
        check(status == 200 and {"automatic", "karras", "exponential", "sgm_uniform"} <= {x["name"] for x in schedulers},
              "GET /sdapi/v1/schedulers")

        # txt2img: the CLI's images, the parameters text in each PNG and in info.
        body = {"prompt": "a white sneaker", "seed": 11, "steps": 6, "batch_size": 2, "cfg_scale": 5}
        status, _, r = s.post("/sdapi/v1/txt2img", body)
        expected = generate("sneaker", "-m", SD, "-p", "a white sneaker", "--seed", "11", "--steps", "6", "-b", "2",
                            "--cfg-scale", "5")
        info = json.loads(r["info"]) if status == 200 else {}
        check(status == 200 and [image_pixels(i) for i in r["images"]] == expected,
              "txt2img: the images tiledraw generate draws from the same prompt, seed, steps, batch and guidance")
        check(info.get("all_seeds") == [11, 12] and info.get("seed") == 11 and info.get("sampler_name") == "Euler"
              and r["parameters"]["steps"] == 6 and r["parameters"]["width"] == 32,
              "txt2img: info's seeds and sampler label, parameters with the model's defaults filled in")
        check(status == 200 and png_text(r["images"][1])["parameters"] == info["infotexts"][1]
              and "Seed: 12" in info["infotexts"][1] and info["infotexts"][1].startswith("a white sneaker\n"),
              "txt2img: each PNG carries its A1111 parameters text, the same as info's infotexts")

        # Old A1111 labels that name a schedule, and n_iter continuing the seeds.
        status, _, r = s.post("/sdapi/v1/txt2img", {"prompt": "a dark ankle boot", "seed": 3, "steps": 5,
                                                    "sampler_name": "DPM++ 2M Karras", "n_iter": 2})
        expected = generate("boot", "-m", SD, "-p", "a dark ankle boot", "--seed", "3", "--steps", "5", "-b", "2",
                            "--sampler", "dpm++2m", "--scheduler", "karras")
        check(status == 200 and [image_pixels(i) for i in r["images"]] == expected,
              "txt2img: 'DPM++ 2M Karras' is dpm++2m on the Karras schedule; n_iter 2 continues the seeds")

        # seed -1: a random seed, reported, that draws the same image again.
        status, _, r = s.post("/sdapi/v1/txt2img", {"prompt": "a bag", "seed": -1, "steps": 4})
        seed = json.loads(r["info"])["seed"]
        status2, _, again = s.post("/sdapi/v1/txt2img", {"prompt": "a bag", "seed": seed, "steps": 4})
        check(status == 200 and status2 == 200 and r["images"] == again["images"], f"seed -1: a random seed ({seed}) that draws the same again")

        # Fields tiledraw does not support are named, never dropped silently.
        status, _, r = s.post("/sdapi/v1/txt2img", {"prompt": "a shirt", "steps": 2, "restore_faces": False, "enable_hr": True,
                                                    "override_settings": {"sd_vae": "x", "CLIP_stop_at_last_layers": 1},
                                                    "save_images": True, "send_images": False})
        ignored = json.loads(r["info"])["ignored_fields"] if status == 200 else []
        check(status == 200 and {"restore_faces", "enable_hr", "override_settings.sd_vae"} <= set(ignored)
              and any(i.startswith("save_images") for i in ignored) and r["images"] == [],
              f"unsupported fields are listed as ignored in info ({ignored}); send_images false sends none")

        # img2img: from a PNG, as the CLI's -i and --strength.
        init = os.path.join(WORK, "sneaker-1.png")
        with open(init, "rb") as f:
            init_b64 = base64.b64encode(f.read()).decode()
        status, _, r = s.post("/sdapi/v1/img2img", {"prompt": "a dark ankle boot", "init_images": ["data:image/png;base64," + init_b64],
                                                    "denoising_strength": 0.6, "seed": 2, "steps": 10})
        expected = generate("img2img", "-m", SD, "-p", "a dark ankle boot", "-i", init, "--strength", "0.6", "--seed", "2",
                            "--steps", "10")
        check(status == 200 and [image_pixels(i) for i in r["images"]] == expected
              and r["parameters"]["denoising_strength"] == 0.6,
              "img2img: the CLI's image from the same init image and strength (a data URL accepted)")

        # The class-conditional DiT through override_settings: the prompt names classes.
        status, _, r = s.post("/sdapi/v1/txt2img", {"prompt": "sneaker", "seed": 4, "steps": 5,
                                                    "override_settings": {"sd_model_checkpoint": "fashion-dit-8bit-s"}})
        expected = generate("dit", "-m", DIT, "--class", "sneaker", "--seed", "4", "--steps", "5")
        check(status == 200 and [image_pixels(i) for i in r["images"]] == expected
              and json.loads(r["info"])["sd_model_name"] == "fashion-dit-8bit-s.safetensors",
              "override_settings.sd_model_checkpoint picks the DiT for one request; its prompt names the class")
        check(s.get("/sdapi/v1/options")[2]["sd_model_checkpoint"] == "fashion-sd-8bit-s.safetensors",
              "the override did not outlive its request")
        status, _, answer = s.post("/sdapi/v1/options", {"sd_model_checkpoint": "fashion-dit-8bit-s.safetensors", "sd_vae": "y"})
        check(status == 200 and answer["ignored_fields"] == ["sd_vae"]
              and s.get("/sdapi/v1/options")[2]["sd_model_checkpoint"] == "fashion-dit-8bit-s.safetensors"
              and s.get("/health")[2]["model"] == "fashion-dit-8bit-s.safetensors",
              "POST /sdapi/v1/options switches the current checkpoint and names what it ignored")
        s.post("/sdapi/v1/options", {"sd_model_checkpoint": "fashion-sd-8bit-s.safetensors"})

        # Refusals: a 4xx naming the field, for each kind of bad input.
        t2i = "/sdapi/v1/txt2img"
        expect_error(s, t2i, None, 400, ["body", "not valid JSON"], raw=b'{"prompt": ')
        expect_error(s, t2i, None, 400, ["body", "not valid JSON"], raw=b'\xff\xfe{}')
        expect_error(s, t2i, [1, 2], 400, ["body", "expected a JSON object"])
        expect_error(s, t2i, None, 400, ["body", "beyond a double's range"], raw=b'{"steps": 1e400}')
        expect_error(s, t2i, {"prompt": 5}, 422, ["prompt", "expected a string"])
        expect_error(s, t2i, {"steps": "ten"}, 422, ["steps", "expected an integer"])
        expect_error(s, t2i, {"steps": 2.5}, 422, ["steps", "expected an integer"])
        expect_error(s, t2i, {"steps": 201}, 422, ["steps", "outside 1..200"])
        expect_error(s, t2i, {"steps": -3}, 422, ["steps", "outside"])
        expect_error(s, t2i, {"seed": 2 ** 40}, 422, ["seed", "outside"])
        expect_error(s, t2i, {"cfg_scale": "high"}, 422, ["cfg_scale", "expected a number"])
        expect_error(s, t2i, {"sampler_name": "Euler b"}, 422, ["sampler_name", "unknown sampler 'Euler b'", "DPM++ 2M"])
        expect_error(s, t2i, {"scheduler": "cosine"}, 422, ["scheduler", "unknown scheduler 'cosine'", "karras"])
        expect_error(s, t2i, {"width": 100}, 422, ["width, height", "multiple of 8"])
        expect_error(s, t2i, {"width": 512}, 422, ["width", "outside 8..256"])
        expect_error(s, t2i, {"batch_size": 9}, 422, ["batch_size", "outside 1..8"])
        expect_error(s, t2i, {"batch_size": 4, "n_iter": 3}, 422, ["n_iter", "limit of 8"])
        expect_error(s, t2i, {"send_images": "yes"}, 422, ["send_images", "expected true or false"])
        expect_error(s, t2i, {"override_settings": {"sd_model_checkpoint": "sdxl.safetensors"}}, 422,
                     ["override_settings.sd_model_checkpoint", "no model 'sdxl.safetensors'", "fashion-sd-8bit-s.safetensors"])
        expect_error(s, t2i, {"override_settings": []}, 422, ["override_settings", "expected an object"])
        expect_error(s, t2i, {"prompt": "a <lora:style:0.8>"}, 422, ["prompt: <lora:style:0.8>", "no LoRA folder is set"])
        status, _, listed = s.get("/sdapi/v1/loras")
        check(status == 200 and listed == [], "GET /sdapi/v1/loras without --lora-dir: none")
        expect_error(s, t2i, {"prompt": "cat", "override_settings": {"sd_model_checkpoint": "fashion-dit-8bit-s"}}, 422, ["prompt:", "cat"])
        expect_error(s, "/sdapi/v1/img2img", {"prompt": "x"}, 422, ["init_images", "expected a list"])
        expect_error(s, "/sdapi/v1/img2img", {"init_images": ["%%%not base64"]}, 422, ["init_images", "not valid base64"])
        expect_error(s, "/sdapi/v1/img2img", {"init_images": [base64.b64encode(b"GIF89a not a png").decode()]}, 422,
                     ["init_images[0]", "not a readable PNG"])
        expect_error(s, "/sdapi/v1/img2img", {"init_images": [init_b64[:200]]}, 422, ["init_images"])
        expect_error(s, "/sdapi/v1/img2img", {"init_images": [init_b64], "denoising_strength": 2}, 422, ["denoising_strength", "outside"])
        expect_error(s, t2i, None, 413, ["body", "limit"], raw=b'{"prompt": "' + b"x" * (1 << 20) + b'"}')
        expect_error(s, "/sdapi/v1/options", None, 400, ["body"], raw=b"nope")
        expect_error(s, "/sdapi/v1/options", {"sd_model_checkpoint": "missing"}, 422, ["sd_model_checkpoint", "no model"])
        status, _, answer = s.get("/sdapi/v1/nothing")
        check(status == 404 and "GET /sdapi/v1/nothing" in answer["detail"], "an unknown endpoint: 404 naming it")
        check(s.get("/health")[0] == 200, "the server still answers after every refusal")

    # LoRA tags in prompts and the LoRA folder, as A1111's: a tag is its
    # adapter at its strengths (the CLI's --lora FILE:TE:UNET with the tag
    # removed), the infotext keeps the prompt as written; the folder is listed,
    # and read again only when refreshed.
    loras = os.path.join(WORK, "loras")
    style = os.path.join(loras, "sub", "style.safetensors")
    deep = '{"a": ' * 40 + "1" + "}" * 40
    write_lora(style, {"ss_output_name": "fancy", "ss_tag_frequency": json.dumps({"shoes": {"white": 3}}),
                       "ss_note": "{not JSON", "ss_deep": deep, "ssmd_cover_images": "[\"a picture as base64\"]"})
    with Server(TILEDRAW, "-m", SD, "--lora-dir", loras) as s:
        status, _, listed = s.get("/sdapi/v1/loras")
        check(status == 200 and listed == [{"name": "style", "alias": "fancy", "path": style, "metadata": {
                  "ss_output_name": "fancy", "ss_tag_frequency": {"shoes": {"white": 3}}, "ss_note": "{not JSON",
                  "ss_deep": deep}}],
              "GET /sdapi/v1/loras: name, alias, path, metadata (JSON objects parsed, unless not JSON or nested"
              f" 40 deep; cover images left out): {str(listed)[:200]}")
        settings = ["-m", SD, "--seed", "5", "--steps", "4"]
        status, _, r = s.post(t2i, {"prompt": "a white sneaker <lora:style:0.8>", "seed": 5, "steps": 4})
        expected = generate("tagged", *settings, "-p", "a white sneaker", "--lora", style + ":0.8")
        plain = generate("untagged", *settings, "-p", "a white sneaker")
        info = json.loads(r["info"]) if status == 200 else {}
        check(status == 200 and [image_pixels(i) for i in r["images"]] == expected and expected != plain,
              "txt2img <lora:style:0.8>: the image of --lora FILE:0.8 without the tag (not the one without the adapter)")
        check(status == 200 and info["infotexts"][0].startswith("a white sneaker <lora:style:0.8>\nSteps: 4")
              and png_text(r["images"][0])["parameters"] == info["infotexts"][0]
              and r["parameters"]["prompt"] == info["prompt"] == "a white sneaker <lora:style:0.8>",
              "txt2img: the infotext, parameters and info keep the prompt with its tag")
        status, _, r = s.post("/sdapi/v1/img2img", {"prompt": "a dark ankle boot <lora:fancy:te=0:unet=0.8>",
                                                    "init_images": [init_b64], "seed": 2, "steps": 10})
        expected = generate("tagged-img2img", "-m", SD, "-p", "a dark ankle boot", "-i", init, "--seed", "2", "--steps", "10",
                            "--lora", style + ":0:0.8")
        check(status == 200 and [image_pixels(i) for i in r["images"]] == expected,
              "img2img <lora:fancy:te=0:unet=0.8>: by its alias, the UNet's side alone, as --lora FILE:0:0.8")
        missing = " in the LoRA folder " + loras
        expect_error(s, t2i, {"prompt": "a <lora:later:1>"}, 422, ["prompt: <lora:later:1>: no adapter named 'later'", missing])
        expect_error(s, t2i, {"prompt": "<lora:style:strong>"}, 422, ["prompt: <lora:style:strong>", "'strong' is not a number"])
        expect_error(s, "/sdapi/v1/img2img", {"prompt": "<lora:style:1:dyn=4>", "init_images": [init_b64]}, 422,
                     ["prompt: <lora:style:1:dyn=4>", "not supported"])
        write_lora(os.path.join(loras, "later.safetensors"), {})
        expect_error(s, t2i, {"prompt": "a <lora:later:1>"}, 422, ["no adapter named 'later'"])
        status, _, answer = s.post("/sdapi/v1/refresh-loras", {})
        check(status == 200 and answer is None and [x["name"] for x in s.get("/sdapi/v1/loras")[2]] == ["later", "style"]
              and s.post(t2i, {"prompt": "a <lora:later:1>", "steps": 2})[0] == 200,
              "POST /sdapi/v1/refresh-loras: a file added since is listed and found only after it")

    # Authentication: everything but / and /health needs the bearer key.
    with Server(TILEDRAW, "-m", SD, "--api-key", "s3cret") as s:
        check(s.get("/health")[0] == 200 and s.get("/")[0] == 200, "--api-key: / and /health need no key")
        status, headers, answer = s.get("/sdapi/v1/sd-models")
        check(status == 401 and headers.get("WWW-Authenticate") == "Bearer" and "Authorization" in answer["detail"],
              "--api-key: no key is a 401 saying what to send")
        check(s.get("/sdapi/v1/sd-models", headers={"Authorization": "Bearer s3cre"})[0] == 401
              and s.post("/sdapi/v1/txt2img", {"steps": 1}, headers={"Authorization": "Basic s3cret"})[0] == 401,
              "--api-key: a wrong key or scheme is a 401")
        check(s.get("/sdapi/v1/sd-models", headers={"Authorization": "Bearer s3cret"})[0] == 200
              and s.post("/sdapi/v1/txt2img", {"steps": 1}, headers={"Authorization": "Bearer s3cret"})[0] == 200,
              "--api-key: the right key is let in")

    # The queue: one worker, one place; a third request is turned away with Retry-After.
    with Server(TILEDRAW, "-m", SD, "--workers", "1", "--queue", "1", "--max-steps", "1000") as s:
        long_body = {"prompt": "a dress", "steps": 1000, "seed": 1}
        answers = []
        threads = [threading.Thread(target=lambda task=task: answers.append(
            s.post("/sdapi/v1/txt2img", {**long_body, "force_task_id": task}))) for task in ("first", "second")]
        threads[0].start()
        check(wait_until(lambda: s.get("/sdapi/v1/progress")[2]["state"]["sampling_steps"] > 0), "a long request runs")
        threads[1].start()
        check(wait_until(lambda: s.get("/sdapi/v1/progress")[2]["queued"] == 1), "a second one waits")
        first = s.post("/internal/progress", {"id_task": "first", "id_live_preview": -1})[2]
        second = s.post("/internal/progress", {"id_task": "second"})[2]
        unknown = s.post("/internal/progress", {"id_task": "third"})[2]
        check(first["active"] and not first["queued"] and 0 <= first["progress"] <= 1 and first["textinfo"].endswith("/1000")
              and second["queued"] and not second["active"] and second["progress"] is None
              and not unknown["active"] and not unknown["completed"] and unknown["textinfo"] == "no such task",
              "POST /internal/progress: each task by its force_task_id (running, queued, unknown)")
        expect_error(s, "/internal/progress", {"id": "x"}, 422, ["id_task", "expected a string"])
        progress = s.get("/sdapi/v1/progress")[2]
        check(0 <= progress["progress"] <= 1 and progress["state"]["sampling_steps"] == 1000 and progress["state"]["job_count"] == 2,
              f"GET /sdapi/v1/progress: the running job's steps ({progress['state']['sampling_step']}/1000), two jobs")
        status, headers, answer = s.post("/sdapi/v1/txt2img", {"steps": 1})
        check(status == 503 and headers.get("Retry-After") == "5" and "queue is full" in answer["detail"],
              "a full queue: 503 with Retry-After")
        start = time.monotonic()
        interrupted = 0
        while len(answers) < 2 and time.monotonic() - start < 20:
            interrupted += s.post("/sdapi/v1/interrupt")[2]["interrupted"]
            time.sleep(0.05)
        for t in threads:
            t.join()
        infos = [json.loads(a[2]["info"]) for a in answers if a[0] == 200]
        check(len(infos) == 2 and all(i["interrupted"] for i in infos) and all(a[2]["images"] == [] for a in answers),
              f"POST /sdapi/v1/interrupt: both stop early with 200, interrupted, no images ({time.monotonic() - start:.2f} s)")
        check(s.post("/sdapi/v1/txt2img", {"steps": 2})[0] == 200, "the worker is free again")
        done = s.post("/internal/progress", {"id_task": "first"})[2]
        check(done["completed"] and done["progress"] == 1 and not done["active"], "a finished task reads as completed")

    # A time limit, and a client that goes away: each frees the worker within a step.
    # The limit leaves room for the short request after it on a busy machine: with
    # ctest running other tests beside it, OpenMP's threads wait for cores, and
    # 2 steps that take 20 ms alone have taken 1.8 s.
    with Server(TILEDRAW, "-m", SD, "--workers", "1", "--max-steps", "10000", "--timeout", "6") as s:
        start = time.monotonic()
        status, _, answer = s.post("/sdapi/v1/txt2img", {"steps": 10000})
        check(status == 503 and "limit of 6.0 s" in answer["detail"] and time.monotonic() - start < 10,
              f"--timeout 6: 503 after {time.monotonic() - start:.2f} s (10000 steps take some 30 s)")
        status, _, answer = s.post("/sdapi/v1/txt2img", {"steps": 2})
        check(status == 200, "after a timeout the worker is free" + ("" if status == 200 else f" (got {status}: {answer})"))
    with Server(TILEDRAW, "-m", SD, "--workers", "1", "--max-steps", "10000") as s:
        body = json.dumps({"steps": 10000}).encode()
        client = socket.create_connection(("127.0.0.1", s.port))
        client.sendall(b"POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        check(wait_until(lambda: s.get("/sdapi/v1/progress")[2]["running"] == 1), "a client's long request runs")
        waiting = socket.create_connection(("127.0.0.1", s.port))
        waiting.sendall(b"POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: x\r\nContent-Length: " + str(len(body)).encode()
                        + b"\r\n\r\n" + body)
        check(wait_until(lambda: s.get("/sdapi/v1/progress")[2]["queued"] == 1), "a second client's request waits")
        waiting.close()
        start = time.monotonic()
        check(wait_until(lambda: s.get("/sdapi/v1/progress")[2]["queued"] == 0, timeout=5)
              and s.get("/sdapi/v1/progress")[2]["running"] == 1,
              f"the waiting client hung up: its job left the queue within {time.monotonic() - start:.2f} s, the other runs on")
        client.close()
        start = time.monotonic()
        check(wait_until(lambda: s.get("/sdapi/v1/progress")[2]["running"] == 0, timeout=5),
              f"the running client hung up: its job was cancelled within {time.monotonic() - start:.2f} s")

    # Files: only under --output-dir, with names the server makes.
    out = os.path.join(WORK, "saved")
    with Server(TILEDRAW, "-m", SD, "--output-dir", out) as s:
        status, _, r = s.post("/sdapi/v1/txt2img", {"prompt": "../../etc/passwd", "seed": 9, "steps": 3, "batch_size": 2,
                                                    "save_images": True})
        files = sorted(os.listdir(out))
        check(status == 200 and len(files) == 2 and all(f.endswith(("-9.png", "-10.png")) for f in files)
              and "ignored_fields" in r["info"] and "save_images" not in json.loads(r["info"])["ignored_fields"],
              f"save_images writes under --output-dir only, named by the server ({files})")
        check(read_png(os.path.join(out, files[0])) in [image_pixels(i) for i in r["images"]], "the saved PNG is the image sent")

    print(f"{len(failures)} failure(s)" if failures else "all server API checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
