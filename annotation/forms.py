"""Server-validated forms of the HTML pages. Fields carry their own errors; views stay thin."""

from django import forms

from .item_browser import ItemFilters, valid_metadata_key
from .models import Item

YES_NO = [("", "any"), ("yes", "yes"), ("no", "no")]


class ItemFilterForm(forms.Form):
    """The item browser's filters (GET). Empty fields do not filter."""

    q = forms.CharField(required=False, max_length=200, label="Search")
    route = forms.ChoiceField(required=False, choices=[("", "any"), *Item.Route.choices])
    human = forms.ChoiceField(required=False, choices=YES_NO, label="Human labels")
    judge = forms.ChoiceField(required=False, choices=YES_NO, label="Judge labels")
    disagreement = forms.BooleanField(required=False, label="Judge order disagreement")
    gold = forms.ChoiceField(required=False, choices=YES_NO)
    annotator = forms.CharField(required=False, max_length=150)
    meta_key = forms.CharField(required=False, max_length=64, label="Metadata key")
    meta_value = forms.CharField(required=False, max_length=200, label="= value")
    created_from = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    created_to = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    after = forms.IntegerField(required=False, min_value=0, widget=forms.HiddenInput)

    def clean_meta_key(self) -> str:
        key = self.cleaned_data["meta_key"].strip()
        if key and not valid_metadata_key(key):
            raise forms.ValidationError("Letters, digits, '_', '.' and '-' only.")
        return key

    def clean(self):
        data = super().clean()
        start, end = data.get("created_from"), data.get("created_to")
        if start and end and start > end:
            self.add_error("created_to", "Must not be before the start.")
        return data

    def filters(self) -> ItemFilters:
        return ItemFilters(**{k: v for k, v in self.cleaned_data.items() if k != "after"})
