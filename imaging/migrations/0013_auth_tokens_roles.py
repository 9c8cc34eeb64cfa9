"""Bearer tokens for DICOMweb: personal access tokens (stored as a hash), local roles for the data stores'
authorizers (SPEC 12.6), and the audit trail's userIdentity type. identity_type is nullable with no default, so
both engines add it with a plain ADD COLUMN: on SQLite a rebuild of imaging_auditevent would drop its append-only
triggers (0008, 0009)."""
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('imaging', '0012_qido_study_order'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='Role',
            fields=[
                ('name', models.CharField(max_length=64, primary_key=True, serialize=False)),
                ('description', models.CharField(blank=True, max_length=256)),
                ('policy', models.CharField(choices=[('AWSHealthImagingFullAccess', 'Full Access'), ('AWSHealthImagingReadOnlyAccess', 'Read Only'), ('Custom', 'Custom')], default='AWSHealthImagingReadOnlyAccess', max_length=40)),
                ('policy_document', models.JSONField(blank=True, help_text='IAM-style policy when policy is Custom', null=True)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
            ],
            options={
                'ordering': ['name'],
            },
        ),
        migrations.AddField(
            model_name='auditevent',
            name='identity_type',
            field=models.CharField(blank=True, max_length=16, null=True),
        ),
        migrations.CreateModel(
            name='AccessToken',
            fields=[
                ('token_id', models.CharField(max_length=20, primary_key=True, serialize=False)),
                ('name', models.CharField(blank=True, max_length=128)),
                ('secret_sha256', models.CharField(editable=False, max_length=64)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('expires_at', models.DateTimeField(blank=True, help_text='Blank: never', null=True)),
                ('revoked_at', models.DateTimeField(blank=True, null=True)),
                ('last_used_at', models.DateTimeField(blank=True, null=True)),
                ('datastore', models.ForeignKey(blank=True, help_text='Blank: every data store the user may read', null=True, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='imaging.datastore')),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='access_tokens', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['-created_at'],
            },
        ),
    ]
