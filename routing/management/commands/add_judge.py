"""``manage.py add_judge NAME --provider ... --model ...``: a judge with the shipped templates."""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from routing.judges import services
from routing.judges.models import OutputMode, Provider
from tandem.errors import ApplicationError


class Command(BaseCommand):
    help = "Add an LLM judge. API keys are read from the environment variable you name."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--provider", required=True, choices=Provider.values)
        parser.add_argument("--model", required=True)
        parser.add_argument("--base-url", default="")
        parser.add_argument(
            "--api-key-env",
            default="",
            help="NAME of the environment variable holding the key (default: OPENAI_API_KEY "
            "or ANTHROPIC_API_KEY; none for OpenAI-compatible servers)",
        )
        parser.add_argument("--concurrency", type=int, default=8)
        parser.add_argument("--output-mode", choices=OutputMode.values, default=OutputMode.AUTO)
        parser.add_argument("--price-in", default="0", help="USD per million input tokens")
        parser.add_argument("--price-out", default="0", help="USD per million output tokens")
        parser.add_argument("--rpm", type=int, default=None, help="requests per minute")
        parser.add_argument("--tpm", type=int, default=None, help="tokens per minute")
        parser.add_argument("--timeout", type=float, default=60.0)

    def handle(self, *args, **o):
        try:
            judge = services.judge_create(
                name=o["name"],
                provider=o["provider"],
                model=o["model"],
                base_url=o["base_url"],
                api_key_env=o["api_key_env"],
                max_concurrency=o["concurrency"],
                output_mode=o["output_mode"],
                price_input_per_mtok=o["price_in"],
                price_output_per_mtok=o["price_out"],
                requests_per_minute=o["rpm"],
                tokens_per_minute=o["tpm"],
                timeout_seconds=o["timeout"],
            )
        except ValidationError as exc:
            raise CommandError(
                "; ".join(f"{k}: {', '.join(v)}" for k, v in exc.message_dict.items())
            ) from None
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        key = f" (API key from ${judge.key_env})" if judge.key_env else ""
        self.stdout.write(f"judge {judge.name}: {judge.provider} {judge.model}{key}")
